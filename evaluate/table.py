"""The paper's Table 1 from the per-mixture results (numpy only, no torch).

Every number is a mean over the test mixtures with the half-width of its confidence
interval (``report.ci_level``, Student t); the paper's published value sits beside it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from bootsep.errors import BootsepError
from bootsep.evaluate.estimates import SPATIAL
from bootsep.evaluate.paper import paper_key, paper_row
from bootsep.evaluate.scoring import ENSEMBLES, METRICS
from bootsep.evaluate.stats import mean_ci
from bootsep.train.conditions import Condition

RESULTS = Path("data/results")


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise BootsepError("evaluation results not found (run the evaluate stage)", path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in (*METRICS, "mean_confidence"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else float("nan")
    return rows


def approach_label(conditions: dict[str, Condition], ensemble_model: str,
                   approach: str) -> tuple[str, str, tuple]:
    """(channels, human label, paper key) of an approach."""
    if approach == SPATIAL:
        return "2ch", "Spatial algorithm", ("2ch", SPATIAL)
    if approach in ENSEMBLES:
        kind = approach.split("_", 1)[1]
        return "2ch", f"Ensemble ({kind}, {ensemble_model})", ("2ch", approach)
    c = conditions[approach]
    if c.labels == "gt":
        share = "all" if c.fraction >= 1 else f"{c.fraction:.0%}"
        return "1ch", f"DC w/ ground truth ({share})", paper_key("gt", fraction=c.fraction)
    return "1ch", f"DC w/ estimates, α = {c.alpha:g}", paper_key("spatial", alpha=c.alpha)


def table1(conditions: dict[str, Condition], ensemble_model: str, rows: list[dict], labels: dict,
           level: float) -> dict:
    """``{approach: {label, channels, n, metric, metric_ci, quality, quantity, paper}}`` for
    the training ``conditions`` (by name, in Table 1 order), the spatial algorithm and the
    ensembles with ``ensemble_model``."""
    test = [r for r in rows if r["split"] == "test"]
    order = [*conditions, SPATIAL, *ENSEMBLES]
    table = {}
    for approach in order:
        sel = [r for r in test if r["approach"] == approach]
        if not sel:
            continue
        channels, label, key = approach_label(conditions, ensemble_model, approach)
        entry = {"label": label, "channels": channels, "mixtures": len(sel)}
        for m in METRICS:
            mean, half = mean_ci(np.array([r[m] for r in sel]), level)
            entry[m], entry[f"{m}_ci"] = mean, half
        lab = labels.get(approach)
        entry["quality"] = lab["quality"] if lab else None
        entry["quantity"] = lab["quantity"] if lab else None
        if approach in ENSEMBLES:
            entry["spatial_share"] = float(np.mean([r["choice"] == SPATIAL for r in sel]))
        entry["paper"] = paper_row(key)
        table[approach] = entry
    return table


def _num(v, fmt="{:.2f}") -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)


def table1_markdown(table: dict, ensemble: dict, level: float, has_refs: bool) -> str:
    lines = ["# Table 1: SI-SDR (dB) for each approach, ours (paper)", ""]
    if not has_refs:
        lines += ["The corpus has no reference sources: separated outputs and confidences only, no metrics.", ""]
    lines += [f"Means over {next(iter(table.values()))['mixtures'] if table else 0} test mixtures, "
              f"± half-width of the {level:.0%} confidence interval of the mean. Confidence ensemble "
              f"threshold: {ensemble['threshold']:.4f} (the {ensemble['percentile']}th percentile of "
              f"{ensemble['valid_mixtures']} validation mixtures' mean confidence).", "",
              "| | Approach | Quality | Quantity | SI-SDR | SI-SIR | SI-SAR | SI-SDRi |",
              "|---|---|---|---|---|---|---|---|"]
    for e in table.values():
        p = e["paper"] or {}
        cells = [f"{_num(e['quality'], '{:.3f}')} ({_num(p.get('quality'), '{:.3f}')})",
                 f"{_num(e['quantity'], '{:.3f}')} ({_num(p.get('quantity'), '{:.3f}')})"]
        for m in ("si_sdr", "si_sir", "si_sar"):
            cells.append(f"{_num(e[m], '{:.1f}')} ± {_num(e[m + '_ci'], '{:.1f}')} ({_num(p.get(m), '{:.1f}')})")
        cells.append(f"{_num(e['si_sdri'], '{:.1f}')} ± {_num(e['si_sdri_ci'], '{:.1f}')}")
        lines.append(f"| {e['channels']} | {e['label']} | " + " | ".join(cells) + " |")
    lines += ["", "Each cell: ours (paper). The paper: spatialized wsj0-2mix, 20k training mixtures, "
              "4 x 300 BLSTM, 100 epochs; SI-SDRi was not reported."]
    return "\n".join(lines) + "\n"
