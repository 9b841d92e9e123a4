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
PACKAGES = {"/usr/share/pocketsphinx/test/data": "pocketsphinx-testdata",
            "/usr/share/asterisk/sounds": "asterisk-core-sounds-*-wav"}


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
    if not isinstance(data, dict) or not isinstance(data.get("mixtures"), list) \
            or not isinstance(data.get("sets"), dict):
        raise BootsepError("not a realcheck.json (no list of mixtures or mapping of sets); "
                           "rerun the realcheck stage", path)
    return data


def _pm(stat: dict) -> str:
    mean, ci = stat["mean"], stat["ci"]
    if mean is None:
        return "–"
    return f"{mean:.1f}" + ("" if ci is None else f" ± {ci:.1f}")


def set_summaries(data: dict, level: float) -> dict[str, dict]:
    """``{set: {"mixtures": n, "approaches": summarize(its mixtures)}}`` of a realcheck.json."""
    out = {}
    for name in data["sets"]:
        mixtures = [m for m in data["mixtures"] if m.get("set") == name]
        out[name] = {"mixtures": len(mixtures), "approaches": summarize(mixtures, level)}
    return out


def _source(entry: dict) -> str:
    root = str(entry.get("root", "?"))
    return PACKAGES.get(root.rstrip("/"), root)


def realcheck_markdown(data: dict, level: float) -> str:
    """The section "Real recordings, N mixtures": per approach SI-SDRi and SI-SDR over every
    mixture, and with several sets each set's SI-SDRi."""
    summary = summarize(data["mixtures"], level)
    sets = data["sets"]
    per_set = set_summaries(data, level)
    described = []
    for name, entry in sets.items():
        recordings = entry.get("recordings", [])
        described.append(f"{name} ({_source(entry)}): {per_set[name]['mixtures']} mixtures of "
                         f"{len(recordings)} recordings, "
                         f"{len({r['group'] for r in recordings})} groups")
    several = len(sets) > 1
    head = "| Approach | SI-SDRi | SI-SDR |" + "".join(f" SI-SDRi {n} |" for n in sets if several)
    lines = [f"## Real recordings, {len(data['mixtures'])} mixtures", "",
             f"Human speech never trained on, two recordings of different speakers of one set "
             f"per mixture, mixed as the corpus mixes; models separate channel 0, spatial "
             f"teachers the pair. Means ± {level:.0%} CI over the mixtures (dB). "
             f"{'; '.join(described)}.",
             "", head, "|---" * (3 + (len(sets) if several else 0)) + "|"]
    for approach, stats in summary.items():
        row = f"| {approach} | {_pm(stats['si_sdri'])} | {_pm(stats['si_sdr'])} |"
        if several:
            for name in sets:
                own = per_set[name]["approaches"].get(approach)
                row += f" {'–' if own is None else _pm(own['si_sdri'])} |"
        lines.append(row)
    return "\n".join(lines) + "\n"
