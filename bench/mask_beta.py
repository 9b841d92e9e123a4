"""Binary against soft K-means masks of the trained models (``evaluate.mask_beta``): mean
SI-SDRi of each model on a split for each sharpness beta, overall and per subset and
condition: a measurement, not a test.

Run from a workspace the pipeline has filled (``params.yaml``, ``data/corpus``, ``data/shards``,
``data/models``), e.g. after ``make repro``::

    python bench/mask_beta.py --split valid --betas 1,1.5,2,3,5
    python bench/mask_beta.py --split test --models gt,cacgmm_rooms_alpha_1
    python bench/mask_beta.py --split test --betas 2 --models gt --rows /tmp/gt_rows
    python bench/mask_beta.py --split valid --betas 2 --weight none   # K-means unweighted

``--rows DIR`` also writes each beta's rows as ``DIR/per_mixture_<beta>.csv`` (``binary``,
``2``, ...) in the evaluate stage's ``per_mixture.csv`` format, the approach column naming the
model, for paired per-mixture comparisons of two trainings (a model folder renamed under
``data/models`` is scored under its new name).

Each beta separates the split with every model through the evaluate stage's own
:func:`~bootsep.evaluate.separation.split_estimates` (``binary``: the paper's masks) and scores
it with its :func:`~bootsep.evaluate.scoring.score`, so the row of params.yaml's beta equals the
evaluate stage's numbers. Prints a table and, as the LAST stdout line, one JSON object.

Measured on the default run's models (1e59270: 1,000 training mixtures, 7 epochs; 2 idle
cores). Validation split (200 in-domain mixtures) — mean over the gt and the three alpha = 1
models: binary 1.83, beta 1: 2.79, 1.5: 3.33, **2: 3.50**, 3: 3.42, 5: 3.02 (so 2.0 in
params.yaml); per model binary / 2 / 3: gt 3.74 / 4.90 / 4.91, cacgmm_rooms_alpha_1 2.94 / 4.15
/ 4.39, delay_pair_alpha_1 2.98 / 4.27 / 4.33, alpha_1 (paper teacher) -2.33 / 0.68 / 0.05.
Test split (300: 200 in-domain + 100 held-out engine), binary / beta 2, overall (in-domain,
held-out engine): gt 0.85 / 3.03 (3.22 / 4.53, -3.89 / 0.04); cacgmm_rooms_alpha_1 0.55 / 2.68
(2.33 / 3.82, -2.99 / 0.41); delay_pair_alpha_1 0.5 / 2.55 (in-domain 3.73, held-out 0.17).

``--weight`` sets ``evaluate.kmeans_weight`` (default: params.yaml's) for the measurement;
docs/measurements.md ("Magnitude-weighted K-means") compares the two on Table 1's models.
"""

from __future__ import annotations

import argparse
import collections
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bootsep.atomic import write_text_atomic
from bootsep.config import load_config
from bootsep.config.results import KMEANS_WEIGHTS
from bootsep.evaluate.inference import KMeansMasks
from bootsep.evaluate.scoring import csv_text, score
from bootsep.evaluate.separation import split_estimates
from bootsep.pipeline.storage.layout import stft_config
from bootsep.train.conditions import condition_names
from bootsep.train.saved_model import load_model
from bootsep.train.skipped import skipped_reason


def parse_betas(text: str) -> list[float | None]:
    """``"binary,1,2"`` -> ``[None, 1.0, 2.0]`` (binary is always measured, first)."""
    out: list[float | None] = [None]
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part != "binary":
            out.append(float(part))
    return out


def measure(split: str, betas: list[float | None], model_names: list[str] | None,
            params_path: str = "params.yaml", rows_dir: Path | None = None,
            weight: str | None = None) -> dict:
    params = load_config(params_path, ("stft", "evaluate", "train"))
    cfg, ev = stft_config(params.stft), params.evaluate
    kmeans = KMeansMasks.from_evaluate(ev)
    if weight is not None:
        kmeans = replace(kmeans, weight=weight)
    names = model_names or [n for n in condition_names(params.train_conditions)
                            if not skipped_reason(Path("data/models") / n)]
    models = {n: load_model(Path("data/models") / n, "cpu", expect_stft=cfg)[0] for n in names}
    result: dict = {"split": split, "params_mask_beta": ev.mask_beta,
                    "kmeans_weight": kmeans.weight, "models": {}}
    for beta in betas:
        key = "binary" if beta is None else f"{beta:g}"
        groups: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        rows: list[dict] = []
        for est in split_estimates(split, cfg, models, [], num_sources=params.train.num_sources,
                                   corpus_dir=Path("data/corpus"), shard_root=Path("data/shards"),
                                   kmeans=replace(kmeans, beta=beta), batch_size=ev.batch_size,
                                   device=torch.device("cpu")):
            for name in models:
                row = _score(est, split, name)
                rows.append(row)
                for group in ("all", row["subset"], row["condition"]):
                    if group:
                        groups[name, group].append(row["si_sdri"])
        for (name, group), values in groups.items():
            entry = result["models"].setdefault(name, {}).setdefault(key, {})
            entry[group] = {"si_sdri": round(float(np.mean(values)), 4), "n": len(values)}
        if rows_dir is not None:
            write_text_atomic(Path(rows_dir) / f"per_mixture_{key}.csv", csv_text(rows))
    return result


def _score(est, split: str, approach: str) -> dict:
    """The evaluate stage's per-mixture row; no teacher ran, so its confidence cell is NaN."""
    est.confidence.setdefault("", float("nan"))
    return score(est, split, approach, "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    ap.add_argument("--betas", default="1,1.5,2,3,5",
                    help="comma-separated sharpness values (binary masks are always measured)")
    ap.add_argument("--models", default="",
                    help="comma-separated model names (default: every trained condition)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--rows", type=Path, default=None, metavar="DIR",
                    help="also write each beta's per-mixture rows to DIR/per_mixture_<beta>.csv")
    ap.add_argument("--weight", default=None, choices=KMEANS_WEIGHTS,
                    help="K-means bin weights (default: params.yaml's evaluate.kmeans_weight)")
    args = ap.parse_args()
    if args.rows is not None:
        args.rows.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = measure(args.split, parse_betas(args.betas),
                     [m for m in args.models.split(",") if m] or None, args.params, args.rows,
                     args.weight)
    keys = list(next(iter(result["models"].values()))) if result["models"] else []
    print(f"{args.split}: mean SI-SDRi (dB) per beta; params.yaml evaluate.mask_beta = "
          f"{result['params_mask_beta']}; K-means weight {result['kmeans_weight']}")
    print(f"{'model':28s} {'group':16s} " + " ".join(f"{k:>8s}" for k in keys))
    for name, by_beta in result["models"].items():
        for group in by_beta[keys[0]]:
            cells = " ".join(f"{by_beta[k][group]['si_sdri']:8.2f}" for k in keys)
            print(f"{name:28s} {group:16s} {cells}")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
