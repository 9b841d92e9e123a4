"""DVC stage ``report``: the paper's Table 1 and Figures 2–3 from the evaluation results.

Reads ``data/results/eval/`` (per-mixture metrics, the ensemble threshold, examples),
``data/results/labels/labels.json`` (quality, quantity) and each model's ``log.csv``;
writes ``data/results/table1.json`` (DVC metrics), ``table1.md`` and ``figures/``
(:mod:`bootsep.evaluate.table`, :mod:`bootsep.evaluate.figures`). Imports no torch.

Table 1 reports each test subset and condition (anechoic, reverb) apart when there are
several, and table1.json the SI-SDR against the direct path where the corpus has it; Fig. 2
is coloured by condition.

Without references (``has_references`` false in ensemble.json) Table 1 says which numbers
need them and Figures 2–3 (metrics against confidence) are not drawn; a condition whose model
folder is a "skipped" marker (:mod:`bootsep.train.skipped`) keeps its row, marked not trained,
and has no training curve.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from bootsep.atomic import atomic_dir, write_text_atomic
from bootsep.config import load_config, teacher_entries
from bootsep.evaluate.estimates import ensemble_members, teacher_approach
from bootsep.evaluate.figures import (
    example_figure,
    fig2_confidence_vs_sdr,
    fig3_spatial_vs_model,
    training_curves,
)
from bootsep.evaluate.realcheck_table import (
    read_realcheck,
    realcheck_markdown,
    set_summaries,
    summarize,
)
from bootsep.evaluate.table import read_rows, table1, table1_json_rows, table1_markdown
from bootsep.train.conditions import conditions
from bootsep.train.skipped import skipped_reason

RESULTS = Path("data/results")
MODEL_ROOT = Path("data/models")

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("report", "spatial.teachers", "self_training.rounds",
          "evaluate.ensemble_models", "train_conditions")
RUN_PARAMS = ()


def main(params_path: str | os.PathLike, results: str | os.PathLike = RESULTS,
         model_root: str | os.PathLike = MODEL_ROOT) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    level = params.report.ci_level
    conds = {c.name: c for c in conditions(params.train_conditions)}
    results = Path(results)
    rows = read_rows(results / "eval" / "per_mixture.csv")
    ensemble = json.loads((results / "eval" / "ensemble.json").read_text())
    labels_path = results / "labels" / "labels.json"
    labels = json.loads(labels_path.read_text())["conditions"] if labels_path.is_file() else {}
    has_refs = bool(ensemble.get("has_references", True))
    skipped = {n: r for n in conds if (r := skipped_reason(Path(model_root) / n))}
    teachers = teacher_entries(params)
    accuracy = (json.loads(labels_path.read_text()).get("label_accuracy") or {}) \
        if labels_path.is_file() else {}
    ensembles = {e: ensemble_members(e, lambda m: conds[m].teacher)[1]
                 for e in params.evaluate.ensemble_models}
    table = table1(conds, ensembles, rows, labels, level, has_refs, skipped,
                   teachers=teachers, label_accuracy=accuracy,
                   rounds={n: (e.teacher, e.student)
                           for n, e in params.self_training.rounds.items()})
    spatial = teacher_approach(ensemble.get("teacher") or next(iter(teachers)))
    fig2, fig2_all = None, {}
    with atomic_dir(results / "figures") as tmp:
        if has_refs:
            valid = [r for r in rows if r["split"] == "valid"]
            for t in teachers:
                name = "fig2_confidence_vs_sdr" + ("" if teacher_approach(t) == spatial
                                                   else f"_{t}")
                got = fig2_confidence_vs_sdr(valid, teacher_approach(t), tmp / f"{name}.png")
                fig2_all[t] = _finite(got)
            fig2 = fig2_all.get(spatial[len("spatial_"):])
            fig3_spatial_vs_model([r for r in rows if r["split"] == "test"], spatial,
                                  ensemble["model"], tmp / "fig3_spatial_vs_model.png")
        training_curves({n: Path(model_root) / n / "log.csv" for n in conds if n not in skipped},
                        tmp / "training_curves.png")
        for example in sorted((results / "eval" / "examples").glob("*/masks.npz")):
            example_figure(example, spatial, ensemble["model"],
                           tmp / f"example_{example.parent.name}.png")
    real_md, real_json = realcheck_section(results, level)
    write_text_atomic(results / "table1.json", json.dumps(
        {"ensemble_threshold": ensemble["threshold"], "best_ensemble": ensemble.get("best"),
         "has_references": has_refs,
         "fig2_confidence_vs_sdr": fig2, "confidence_vs_sdr_by_teacher": fig2_all,
         "rows": table1_json_rows(table), **real_json},
        indent=2, default=float) + "\n")
    md = table1_markdown(table, ensemble, level, has_refs) + real_md
    write_text_atomic(results / "table1.md", md)
    print(md)


def _finite(result: dict) -> dict:
    """``result`` with NaN as None (JSON), nested dicts too."""
    return {k: (_finite(v) if isinstance(v, dict) else v if math.isfinite(v) else None)
            for k, v in result.items()}


def realcheck_section(results: Path, level: float) -> tuple[str, dict]:
    """The real-recordings table (markdown, after Table 1) and its table1.json entry, from
    ``realcheck/realcheck.json`` when the realcheck stage wrote it (issue 22)."""
    path = results / "realcheck" / "realcheck.json"
    if not path.is_file():
        return "", {}
    data = read_realcheck(path)
    return ("\n" + realcheck_markdown(data, level),
            {"realcheck": {"mixtures": len(data["mixtures"]),
                           "approaches": summarize(data["mixtures"], level),
                           "sets": set_summaries(data, level)}})
