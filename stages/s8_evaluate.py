"""DVC stage ``evaluate``: separate the test split with every approach and score it (§3.3–3.4).

Approaches: every spatial teacher (``spatial_<teacher>``: its posteriors on channel 0), every
trained model (DC embeddings + K-means), and three ensembles between
``evaluate.ensemble_model`` and its teacher: *confidence* (the teacher when the mixture's
mean confidence is above the ``confidence_percentile``-th percentile of the validation
mixtures' confidences), *random* (a seeded coin) and *oracle* (the better by true SI-SDR).
The validation split is separated by every teacher too (the threshold, and Fig. 2).

Writes ``data/results/eval/``: ``per_mixture.csv`` (one row per mixture x approach, every
metric), ``ensemble.json`` (the threshold) and ``examples/`` (wavs to listen to, masks for
the report's figures).

Without references (a folder of recordings) the metrics are NaN, but every approach still
separates the test split: per_mixture.csv keeps each mixture's mean confidence, the confidence
ensemble still chooses (the random and oracle ensembles only serve metrics and are left out),
and the examples are written. A condition whose model folder is a "skipped" marker (a ground-truth
condition without references, :mod:`bootsep.train.skipped`) is left out with a note.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from bootsep.atomic import atomic_dir, write_text_atomic
from bootsep.config import load_config, teacher_entries
from bootsep.errors import BootsepError
from bootsep.evaluate.ensemble import confidence_threshold
from bootsep.evaluate.estimates import teacher_approach
from bootsep.evaluate.scoring import csv_text, ensemble_rows, score, write_example
from bootsep.evaluate.separation import split_estimates
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config, summary_count
from bootsep.progress import Progress
from bootsep.train.conditions import condition_names, conditions
from bootsep.train.loop import resolve_device
from bootsep.train.saved_model import load_model
from bootsep.train.skipped import skipped_reason
from bootsep.train.threads import thread_governor

MODEL_ROOT = Path("data/models")
OUT = Path("data/results/eval")

log = logging.getLogger(__name__)

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "spatial.teachers", "self_training.rounds", "evaluate", "train.num_sources",
          "train_conditions")
RUN_PARAMS = ("train.device", "train.torch_threads")


def main(params_path: str | os.PathLike, corpus_dir: str | os.PathLike = "data/corpus",
         shard_root: str | os.PathLike = SHARD_ROOT, model_root: str | os.PathLike = MODEL_ROOT,
         out: str | os.PathLike = OUT) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS)
    cfg, ev = stft_config(params.stft), params.evaluate
    corpus_dir, shard_root, out = Path(corpus_dir), Path(shard_root), Path(out)
    device = resolve_device(params.train.device)
    thread_governor(params.train.torch_threads)   # evaluation: a fixed count (auto: every core)
    models, num_sources = {}, params.train.num_sources
    for name in condition_names(params.train_conditions):
        reason = skipped_reason(Path(model_root) / name)
        if reason:
            if name == ev.ensemble_model:
                raise BootsepError(f"evaluate.ensemble_model is '{name}', which was {reason}; "
                                   "name a spatial condition", params.path)
            log.info(f"evaluate: leaving out {name}, {reason}")
            continue
        models[name], meta = load_model(Path(model_root) / name, device)
        if meta["stft"] != cfg:
            raise BootsepError(f"model was trained with {meta['stft']}, the pipeline uses {cfg}",
                               Path(model_root) / name)
    teachers = list(teacher_entries(params))
    by_name = {c.name: c for c in conditions(params.train_conditions)}
    # the ensembles switch between evaluate.ensemble_model and its own teacher
    ens_teacher = by_name[ev.ensemble_model].teacher or teachers[0]
    ens_spatial = teacher_approach(ens_teacher)
    teacher_of = {**{teacher_approach(t): t for t in teachers},
                  **{n: by_name[n].teacher or ens_teacher for n in models}}
    common = dict(cfg=cfg, teachers=teachers, num_sources=num_sources, corpus_dir=corpus_dir,
                  shard_root=shard_root, threshold_db=ev.kmeans_threshold_db,
                  seed=ev.kmeans_seed, batch_size=ev.batch_size, device=device)

    valid_rows = []
    with Progress(summary_count(shard_root / "stft" / "valid"), "evaluate valid (spatial)",
                  "mix") as bar:
        for est in split_estimates("valid", models={}, **common):
            valid_rows += [score(est, "valid", teacher_approach(t), t) for t in teachers]
            bar.update(1)
    threshold = confidence_threshold(np.array([r["mean_confidence"] for r in valid_rows
                                               if r["approach"] == ens_spatial]),
                                     ev.confidence_percentile)

    test_rows: dict[str, list[dict]] = {a: [] for a in teacher_of}
    with atomic_dir(out) as tmp:
        with Progress(summary_count(shard_root / "stft" / "test"), "evaluate test", "mix") as bar:
            estimates = split_estimates("test", models=models, keep_masks=ev.examples, **common)
            for i, est in enumerate(estimates):
                for approach in test_rows:
                    test_rows[approach].append(score(est, "test", approach, teacher_of[approach]))
                if i < ev.examples:
                    write_example(tmp / "examples" / est.id, est, cfg.sample_rate)
                bar.update(1)
        has_refs = all(np.isfinite(r["si_sdr"]) for r in test_rows[ens_spatial])
        if has_refs:
            test_rows.update(ensemble_rows(test_rows, ens_spatial, ev.ensemble_model, threshold,
                                           ev.random_seed))
        else:  # no references: the confidence ensemble still picks, the others need metrics
            test_rows["ensemble_confidence"] = ensemble_rows(
                test_rows, ens_spatial, ev.ensemble_model, threshold,
                ev.random_seed)["ensemble_confidence"]
        all_rows = valid_rows + [r for rows in test_rows.values() for r in rows]
        write_text_atomic(tmp / "per_mixture.csv", csv_text(all_rows))
        write_text_atomic(tmp / "ensemble.json", json.dumps(
            {"model": ev.ensemble_model, "teacher": ens_teacher,
             "percentile": ev.confidence_percentile,
             "threshold": float(threshold), "valid_mixtures": len(valid_rows) // len(teachers),
             "has_references": bool(has_refs)}, indent=2) + "\n")
    log.info(f"evaluate: {len(test_rows[ens_spatial])} test mixtures x {len(test_rows)} "
             f"approaches, confidence threshold {threshold:.4f} -> {out}")
