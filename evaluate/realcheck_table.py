"""The real-recordings check in the report (issue 22): a small table from ``realcheck.json``.

Numpy only (no torch): the report stage renders it. Every number is a mean over the mixtures
with the half-width of its Student-t confidence interval (:func:`bootsep.evaluate.stats.mean_ci`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bootsep.errors import BootsepError
from bootsep.evaluate.stats import mean_ci

# Where a Debian package installs real speech -> the package's name, for the table's title.
PACKAGES = {"/usr/share/pocketsphinx/test/data": "pocketsphinx-testdata"}


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def summarize(mixtures: list[dict], level: float) -> dict[str, dict]:
    """``{approach: {"n", "<metric>": {"mean", "ci"}}}`` over the mixtures' ``scores``, in the
    order the approaches first appear; None where undefined (no value, or a CI of one)."""
    approaches: dict[str, dict[str, list[float]]] = {}
    for mix in mixtures:
        for approach, metrics in mix["scores"].items():
            per = approaches.setdefault(approach, {})
            for k, v in metrics.items():
                per.setdefault(k, []).append(float("nan") if v is None else float(v))
    out = {}
    for approach, per in approaches.items():
        out[approach] = {"n": max(len(v) for v in per.values())}
        for k, values in per.items():
            m = mean_ci(values, level)
            out[approach][k] = {"mean": _finite(m.mean), "ci": _finite(m.half_width)}
    return out


def read_realcheck(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BootsepError(f"unreadable real-recordings results ({exc}); rerun the realcheck "
                           "stage", path) from exc
    if not isinstance(data, dict) or not isinstance(data.get("mixtures"), list):
        raise BootsepError("not a realcheck.json (no list of mixtures); rerun the realcheck "
                           "stage", path)
    return data


def _pm(stat: dict) -> str:
    mean, ci = stat["mean"], stat["ci"]
    if mean is None:
        return "–"
    return f"{mean:.1f}" + ("" if ci is None else f" ± {ci:.1f}")


def realcheck_markdown(data: dict, level: float) -> str:
    """The section "Real recordings (<source>), N mixtures": approach, SI-SDRi and SI-SDR."""
    source = PACKAGES.get(str(data.get("root", "")).rstrip("/"), data.get("root", "?"))
    summary = summarize(data["mixtures"], level)
    n = len(data["mixtures"])
    lines = [f"## Real recordings ({source}), {n} mixtures", "",
             f"Human speech never trained on, two recordings of different groups per mixture, "
             f"mixed as the corpus mixes; models separate channel 0, spatial teachers the pair. "
             f"Means ± {level:.0%} CI over the mixtures (dB).", "",
             "| Approach | SI-SDRi | SI-SDR |", "|---|---|---|"]
    for approach, stats in summary.items():
        lines.append(f"| {approach} | {_pm(stats['si_sdri'])} | {_pm(stats['si_sdr'])} |")
    return "\n".join(lines) + "\n"
