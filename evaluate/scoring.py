"""Scoring the separated estimates (§3.3–3.4): per-mixture rows, ensembles, examples.

One row of ``per_mixture.csv`` per mixture and approach (:func:`score`), the three ensembles
between the spatial algorithm and a model (:func:`ensemble_rows`: confidence, random,
oracle), the per-bin trust chosen on the validation split (:func:`choose_on_valid`), the best
one (:func:`best_ensemble`), and the listening examples. Numpy only.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from bootsep.evaluate.ensemble import (
    choose_confidence,
    choose_oracle,
    choose_random,
)
from bootsep.evaluate.estimates import MixtureEstimates, teacher_approach
from bootsep.evaluate.metrics import separation_metrics, si_sdr
from bootsep.pipeline.audio import write_audio

MODEL_ROOT = Path("data/models")
OUT = Path("data/results/eval")
METRICS = ("si_sdr", "si_sir", "si_sar", "si_sdri")
DIRECT_METRICS = ("si_sdr_direct", "si_sdri_direct")   # against the direct path (WHAMR!)
GROUP_COLUMNS = ("subset", "condition")   # the manifest's groups of mixtures, one column each
COLUMNS = ("split", "id", *GROUP_COLUMNS, "rt60_s", "approach", *METRICS, *DIRECT_METRICS,
           "mean_confidence", "choice", "permutation",
           *(f"{m}_s{k}" for m in ("si_sdr", "si_sir", "si_sar") for k in (1, 2)))
ENSEMBLES = ("ensemble_oracle", "ensemble_random", "ensemble_confidence")


def score(est: MixtureEstimates, split: str, approach: str, teacher: str) -> dict:
    """One per_mixture.csv row (metrics NaN when the corpus has no references); its
    ``mean_confidence`` is spatial teacher ``teacher``'s (the approach's own, for a teacher).

    The reference is the source images at channel 0 (reverberant in a room: the spatialized
    wsj0-2mix convention). When the mixture has direct-path images (``est.direct``), the row
    also has ``si_sdr_direct`` and ``si_sdri_direct`` against them (the WHAMR! convention),
    under the permutation chosen against the images; without them those cells stay empty."""
    row = {"split": split, "id": est.id, "subset": est.subset, "condition": est.condition,
           "rt60_s": est.rt60_s, "approach": approach,
           "mean_confidence": est.confidence[teacher], "choice": "", "permutation": ""}
    if est.references is None:
        return {**row, **{m: float("nan") for m in METRICS}}
    estimates = est.estimates[approach]
    m = separation_metrics(estimates, est.references, est.mixture)
    row.update({k: float(np.mean(m[k])) for k in METRICS})
    row["permutation"] = " ".join(str(int(p)) for p in m["permutation"])
    if est.direct is not None:
        direct = si_sdr(estimates[m["permutation"]], est.direct)   # estimate perm[j] vs source j
        row["si_sdr_direct"] = float(np.mean(direct))
        row["si_sdri_direct"] = float(np.mean(direct - si_sdr(est.mixture[None], est.direct)))
    for k in ("si_sdr", "si_sir", "si_sar"):
        for s, v in enumerate(m[k][:2], start=1):
            row[f"{k}_s{s}"] = float(v)
    return row


def ensemble_rows(rows: dict[str, list[dict]], spatial_approach: str, model: str,
                  threshold: float, seed: int, suffix: str = "") -> dict[str, list[dict]]:
    """The three ensembles' rows between a spatial teacher's approach and a model, each a copy
    of the chosen approach's row (paper §3.3) with the teacher's ``mean_confidence`` (the one
    the switch read); named ``ensemble_<kind><suffix>``."""
    spatial, learned = rows[spatial_approach], rows[model]
    conf = np.array([r["mean_confidence"] for r in spatial])
    picks = {"ensemble_confidence": choose_confidence(conf, threshold),
             "ensemble_random": choose_random(len(spatial), seed),
             "ensemble_oracle": choose_oracle(np.array([r["si_sdr"] for r in spatial]),
                                              np.array([r["si_sdr"] for r in learned]))}
    return {name + suffix: [{**(s if use_spatial else m), "approach": name + suffix,
                             "mean_confidence": s["mean_confidence"],
                             "choice": spatial_approach if use_spatial else model}
                            for s, m, use_spatial in zip(spatial, learned, pick)]
            for name, pick in picks.items()}


def model_ensemble_rows(rows: dict[str, list[dict]], entry: str, model: str, teacher: str,
                        threshold: float, seed: int, name_of: dict[tuple[str, str], str]
                        ) -> dict[str, list[dict]]:
    """:func:`ensemble_rows` of ``model`` and spatial ``teacher`` (``evaluate.ensemble_models``
    entry ``entry``), named as ``name_of`` ``(entry, kind) -> approach`` names them
    (``ensemble_<kind>`` plus the entry's suffix)."""
    suffix = name_of[entry, "confidence"][len("ensemble_confidence"):]
    return ensemble_rows(rows, teacher_approach(teacher), model, threshold, seed, suffix)


def mean_si_sdri(rows: dict[str, list[dict]], approach: str) -> float | None:
    """Mean SI-SDRi of an approach's rows; None without rows or references."""
    values = np.array([r["si_sdri"] for r in rows.get(approach, ())], dtype=np.float64)
    return float(values.mean()) if values.size and np.isfinite(values).all() else None


def best_candidate(rows: dict[str, list[dict]], candidates: dict) -> tuple | None:
    """``(key, mean)`` of the candidate ``key -> approach`` with the highest mean SI-SDRi
    over its rows (the first on a tie); None when no candidate has a finite mean (no
    references)."""
    best = None
    for key, approach in candidates.items():
        mean = mean_si_sdri(rows, approach)
        if mean is not None and (best is None or mean > best[1]):
            best = (key, mean)
    return best


def choose_on_valid(valid_by: dict[str, list[dict]], members: dict[str, tuple[str, str]],
                    thresholds: dict[str, float], candidates: dict[tuple[str, float], str],
                    name_of: dict[tuple[str, str], str], seed: int) -> dict[str, float]:
    """Each ensemble entry's per-bin trust (``members``: entry -> (model, teacher);
    ``candidates``: (entry, trust) -> the approach name of its validation rows): the
    candidate of the highest mean validation SI-SDRi (the first on a tie, and without
    references). Adds the validation rows of each entry's chosen per-bin and its confidence
    ensemble to ``valid_by`` (under their test names), from which the best ensemble is
    chosen."""
    trust = {}
    for e, (m, t) in members.items():
        tried = {q: approach for (entry, q), approach in candidates.items() if entry == e}
        found = best_candidate(valid_by, tried)
        trust[e] = next(iter(tried)) if found is None else found[0]
        valid_by[name_of[e, "perbin"]] = valid_by[tried[trust[e]]]
        rows = model_ensemble_rows(valid_by, e, m, t, thresholds[e], seed, name_of)
        valid_by[name_of[e, "confidence"]] = rows[name_of[e, "confidence"]]
    return trust


def best_ensemble(rows: dict[str, list[dict]], candidates: dict[tuple[str, str], str]
                  ) -> dict | None:
    """The candidate ``(entry, kind) -> approach`` with the highest mean SI-SDRi over its
    rows (the first on a tie) as ``{entry, kind, approach, si_sdri}``; None when no candidate
    has a finite mean (no references)."""
    found = best_candidate(rows, candidates)
    if found is None:
        return None
    (entry, kind), mean = found
    return {"entry": entry, "kind": kind, "approach": candidates[entry, kind], "si_sdri": mean}


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_example(folder: Path, est: MixtureEstimates, rate: int) -> None:
    """Listening examples and the masks the report draws."""
    folder.mkdir(parents=True, exist_ok=True)
    write_audio(folder / "mixture.wav", est.mixture[None], rate)
    for approach, sources in est.estimates.items():
        peak = max(float(np.abs(sources).max()), 1e-9)
        scale = min(1.0, 0.99 / peak)
        for k, s in enumerate(sources, start=1):
            write_audio(folder / f"{approach}_s{k}.wav", (s * scale)[None], rate)
    np.savez_compressed(folder / "masks.npz", logmag_db=est.logmag_db,
                        **{f"mask_{a}": m.astype(np.float16) for a, m in est.masks.items()})
