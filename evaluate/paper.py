"""The paper's published Table 1 (Seetharaman et al., ICASSP 2019), for side-by-side comparison.

Keys are approach kinds, not condition names, so a renamed condition still finds its row:
``("gt", fraction == 1)``, ``("gt", fraction < 1)``, ``("spatial", alpha)``, and the
two-channel approaches by name. Values: quality, quantity, SI-SDR, SI-SIR, SI-SAR (dB).
"""

from __future__ import annotations

PAPER_TABLE1: dict[tuple, dict[str, float | None]] = {
    ("gt", "all"): dict(quality=1.000, quantity=1.000, si_sdr=9.2, si_sir=22.4, si_sar=9.5),
    ("gt", "subset"): dict(quality=1.000, quantity=0.050, si_sdr=2.5, si_sir=11.5, si_sar=3.3),
    ("spatial", 0.0): dict(quality=0.303, quantity=1.000, si_sdr=1.8, si_sir=11.9, si_sar=2.8),
    ("spatial", 0.5): dict(quality=0.362, quantity=0.205, si_sdr=2.8, si_sir=13.5, si_sar=3.6),
    ("spatial", 1.0): dict(quality=0.387, quantity=0.054, si_sdr=2.9, si_sir=13.5, si_sar=3.7),
    ("spatial", 2.0): dict(quality=0.400, quantity=0.005, si_sdr=1.8, si_sir=11.5, si_sar=2.7),
    ("2ch", "spatial"): dict(quality=None, quantity=None, si_sdr=4.3, si_sir=17.3, si_sar=5.6),
    ("2ch", "ensemble_oracle"): dict(quality=None, quantity=None,
                                     si_sdr=6.2, si_sir=19.6, si_sar=7.0),
    ("2ch", "ensemble_random"): dict(quality=None, quantity=None,
                                     si_sdr=3.6, si_sir=15.4, si_sar=4.6),
    ("2ch", "ensemble_confidence"): dict(quality=None, quantity=None,
                                         si_sdr=5.0, si_sir=18.3, si_sar=5.9),
}


def paper_key(labels: str, alpha: float | None = None, fraction: float = 1.0) -> tuple:
    """The Table 1 key of a training condition."""
    if labels == "gt":
        return ("gt", "all" if fraction >= 1 else "subset")
    return ("spatial", float(alpha))


def paper_row(key: tuple) -> dict[str, float | None] | None:
    return PAPER_TABLE1.get(key)
