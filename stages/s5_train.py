"""DVC stage ``train@<condition>``: one deep-clustering model per training condition.

Reads the stft (and, for spatial conditions, spatial + confidence) shards of the train and
valid splits, checks them before any training starts (:mod:`bootsep.train.inputs`), computes
the feature normalisation from the training set, and runs :class:`~bootsep.train.loop.Trainer`
into ``data/models/<condition>/``. Rerunning after an interruption resumes from the checkpoint
when nothing that determines the result has changed (a fingerprint of parameters and inputs).

A ground-truth condition on a corpus without references (no ``source_mag`` in any stft shard,
e.g. a folder of recordings) has no labels to learn from: the stage then writes its declared
outputs as "skipped" markers (:mod:`bootsep.train.skipped`) and succeeds, so ``dvc repro``
completes; the later stages leave the condition out with a note.

Wall-clock times go to ``data/timing/<condition>.json``, outside ``data/models`` (whose DVC
digest the later stages depend on), so an identical retrain leaves ``data/models`` unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

from bootsep.atomic import write_text_atomic
from bootsep.config import LABEL_KINDS, Config, load_config
from bootsep.errors import BootsepError
from bootsep.pipeline.storage.layout import SHARD_ROOT, stft_config
from bootsep.train.augment import SpectralAugment
from bootsep.train.checkpoint import save_checkpoint
from bootsep.train.conditions import OVERRIDES, conditions
from bootsep.train.dataset import ShardStream
from bootsep.train.inputs import (
    check_inputs,
    code_digest,
    fingerprint,
    input_files,
    input_summaries,
    references_present,
    shard_groups,
    subset_ids,
)
from bootsep.train.loop import (
    BEST_MODEL,
    CHECKPOINT,
    LOG_COLUMNS,
    LOG_CSV,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    write_metrics,
)
from bootsep.train.model import ModelConfig, init_model
from bootsep.train.skipped import NO_REFERENCES, SKIPPED
from bootsep.train.warm_start import load_warm, warm_state

MODEL_ROOT = Path("data/models")
TIMING_DIR = "timing"          # data/timing/<condition>.json: beside data/models, not inside

# The params.yaml keys this stage reads: PARAMS change its results and are its DVC `params`
# (tests/test_dvc_deps.py checks both); RUN_PARAMS only change how the work runs.
PARAMS = ("stft", "model", "train", "train_conditions.{group}.{condition}")
RUN_PARAMS = ()

log = logging.getLogger(__name__)


def model_config(params: Config, num_freq: int) -> ModelConfig:
    """``model.size`` picks one entry of ``model.sizes`` (``paper`` = 4 x 300, D = 15)."""
    return ModelConfig(num_freq=num_freq, **params.model.shape.as_dict(),
                       dropout=params.model.dropout, input_norm=params.model.input_norm,
                       frame_stride=params.model.frame_stride)


def write_skipped(out: Path, timing: Path, meta: dict, reason: str) -> None:
    """Every output dvc.yaml declares for a train stage, as markers of a condition not trained."""
    marker = {SKIPPED: reason, "condition": meta["condition"]}
    write_text_atomic(timing, json.dumps({"condition": meta["condition"]["name"], SKIPPED: reason,
                                          "epochs": []}, indent=2) + "\n")
    for name in (BEST_MODEL, CHECKPOINT):
        save_checkpoint(out / name, marker)
    write_text_atomic(out / LOG_CSV, ",".join(LOG_COLUMNS) + "\n")
    write_text_atomic(out / "params.json", json.dumps({**meta, SKIPPED: reason}, indent=2,
                                                      sort_keys=True, default=str) + "\n")
    metrics = {"condition": meta["condition"]["name"], SKIPPED: reason}
    write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def timing_path(model_root: Path, condition: str) -> Path:
    """``<model_root>/../timing/<condition>.json``: per-epoch seconds and frames/s."""
    return Path(model_root).parent / TIMING_DIR / f"{condition}.json"


def main(params_path: str | os.PathLike, condition_name: str, shard_root: Path = SHARD_ROOT,
         model_root: Path = MODEL_ROOT) -> None:
    params = load_config(params_path, PARAMS + RUN_PARAMS, condition=condition_name)
    [condition] = conditions(params.train_conditions)
    cfg = TrainConfig(**params.train.as_dict())
    own = {k: getattr(condition, k) for k in OVERRIDES
           if getattr(condition, k) is not None}     # the condition's own settings
    cfg = replace(cfg, **own)
    stft = stft_config(params.stft)
    mcfg = model_config(params, stft.num_freq)
    out = Path(model_root) / condition.name
    out.mkdir(parents=True, exist_ok=True)

    teacher_dir = Path(shard_root) / "spatial" / str(condition.teacher)
    if condition.labels == "spatial" and not teacher_dir.is_dir():
        group = next(g for g in LABEL_KINDS if params.train_conditions.loaded(g)
                     and condition.name in getattr(params.train_conditions, g))
        where = "spatial.teachers" if group == "spatial" else "self_training.rounds"
        stage = "spatial" if group == "spatial" else "relabel"
        raise BootsepError(f"train_conditions.{group}.{condition.name}.teacher is "
                           f"'{condition.teacher}'; expected a teacher whose shards exist "
                           f"(an entry of {where}; {teacher_dir} is missing: run "
                           f"`dvc repro {stage}@{condition.teacher}`)", params_path)
    if condition.labels == "spatial" and not (teacher_dir / "train").is_dir():
        raise BootsepError(f"teacher '{condition.teacher}' has no shards of the training split, "
                           "which its students need (a teacher with fit_train: false is fitted "
                           "on valid and test only)", teacher_dir)
    train_groups = shard_groups(condition, "train", Path(shard_root))
    valid_groups = shard_groups(condition, "valid", Path(shard_root))
    if condition.labels == "gt" and not references_present(train_groups + valid_groups):
        write_skipped(out, timing_path(model_root, condition.name),
                      {"condition": condition.to_dict(), "stft": asdict(stft)}, NO_REFERENCES)
        log.info(f"train {condition.name}: skipped, {NO_REFERENCES} -> {out}")
        return
    keep = subset_ids(train_groups, condition.fraction, cfg.seed)
    warm = warm_state(teacher_dir, model_root, stft, mcfg) if condition.warm_start else None
    meta = {"condition": condition.to_dict(), "model_config": mcfg.to_dict(),
            "stft": asdict(stft), "train": asdict(cfg), "num_sources": cfg.num_sources,
            "train_mixtures": None if keep is None else len(keep),
            **({"warm_start": {"student": warm[0], "sha256": warm[1]}} if warm else {})}
    fp = fingerprint(meta, input_summaries(condition, Path(shard_root)),
                     input_files(train_groups + valid_groups), code_digest())

    model = init_model(mcfg, seed=cfg.seed)   # same initialisation for every condition (§3.3)
    stream = ShardStream(train_groups, condition, stft, seed=cfg.seed, max_frames=cfg.max_frames,
                         shuffle_buffer=cfg.shuffle_buffer, keep=keep,
                         augment=SpectralAugment(tuple(cfg.augment_warp), cfg.augment_tilt_db),
                         utterance_weighting=cfg.utterance_weighting,
                         frame_stride=mcfg.frame_stride)
    valid = ShardStream(valid_groups, condition, stft, seed=cfg.seed, max_frames=None,
                        shuffle=False, utterance_weighting=cfg.utterance_weighting,
                        frame_stride=mcfg.frame_stride)
    timing = timing_path(model_root, condition.name)
    trainer = Trainer(model, cfg, stream, valid, out, fp, meta, timing)
    if trainer.try_resume() and not trainer.state.done:
        log.info(f"train {condition.name}: resuming after epoch {trainer.state.epoch}, "
                 f"batch {trainer.state.position}")
    else:   # a fresh run (a finished run is rerun only when DVC saw a change: retrain)
        trainer = Trainer(init_model(mcfg, seed=cfg.seed), cfg, stream, valid, out, fp, meta,
                          timing)
        for stale in (CHECKPOINT, BEST_MODEL, LOG_CSV, "metrics.json", "params.json"):
            (out / stale).unlink(missing_ok=True)
        timing.unlink(missing_ok=True)
        check_inputs(valid_groups, condition, stft, f"check valid shards ({condition.name})",
                     cfg.num_sources)
        stats = check_inputs(train_groups, condition, stft,
                             f"check train shards ({condition.name})", cfg.num_sources, keep)
        if warm is None:
            trainer.model.set_stats(*stats.mean_std())
        else:   # the relabelling student's weights and normaliser statistics
            load_warm(trainer.model, warm[2], Path(model_root) / warm[0] / BEST_MODEL)
            log.info(f"train {condition.name}: warm start from student '{warm[0]}'")
    write_text_atomic(out / "params.json", json.dumps(
        {**meta, "params_file": params.raw},
        indent=2, sort_keys=True, default=str) + "\n")
    try:
        state = trainer.run()
    except TrainingInterrupted as exc:
        log.warning(f"train {condition.name}: {exc}")
        sys.exit(128 + exc.signum)
    write_metrics(out, state, {"condition": condition.name, "device": str(trainer.device),
                               "parameters": sum(p.numel() for p in trainer.model.parameters())})
    log.info(f"train {condition.name}: best valid loss {state.best_valid:.4g} "
             f"-> {out / BEST_MODEL}")
