"""DVC stage ``train@<condition>``: one deep-clustering model per training condition.

Reads the stft (and, for spatial conditions, spatial + confidence) shards of the train and
valid splits, checks them before any training starts, computes the feature normalisation
from the training set, and runs :class:`~bootsep.train.loop.Trainer` into
``data/models/<condition>/``. Rerunning after an interruption resumes from the checkpoint
when nothing that determines the result has changed (a fingerprint of parameters and inputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch

from bootsep.pipeline.atomic import write_text_atomic
from bootsep.pipeline.errors import BootsepError
from bootsep.pipeline.params import get, load_params
from bootsep.pipeline.progress import progress
from bootsep.pipeline.shards import Shard, aligned_shard_paths, shard_paths
from bootsep.pipeline.stages.common import SHARD_ROOT, SUMMARY_NAME, stft_config
from bootsep.pipeline.stft import StftConfig
from bootsep.train.conditions import Condition, condition_from_params, condition_names
from bootsep.train.dataset import ShardStream
from bootsep.train.loop import (BEST_MODEL, CHECKPOINT, LOG_CSV, TrainConfig, Trainer,
                                TrainingInterrupted, write_metrics)
from bootsep.train.model import FeatureStats, ModelConfig, init_model

MODEL_ROOT = Path("data/models")


def train_config(params: dict) -> TrainConfig:
    section = dict(get(params, "train"))
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(section) - known
    if unknown:
        raise BootsepError(f"train: unknown key(s) {', '.join(sorted(unknown))}", params.get("_path"))
    return TrainConfig(**section)


def model_config(params: dict, num_freq: int) -> ModelConfig:
    """``model.size`` picks one entry of ``model.sizes`` (``paper`` = 4 x 300, D = 15)."""
    size = get(params, "model.size")
    sizes = get(params, "model.sizes")
    if size not in sizes:
        raise BootsepError(f"model.size is '{size}', expected one of {', '.join(sizes)}", params.get("_path"))
    return ModelConfig.from_dict({**sizes[size], "num_freq": num_freq,
                                  "dropout": float(get(params, "model.dropout", 0.0))})


def shard_groups(condition: Condition, split: str, root: Path = SHARD_ROOT) -> list[tuple[Path, ...]]:
    """Aligned shard paths of the stages a condition reads (errors name the missing folder)."""
    if condition.labels == "gt":
        return [(p,) for p in shard_paths(root / "stft" / split)]
    return aligned_shard_paths(root / "stft" / split, root / "spatial" / split, root / "confidence" / split)


def check_inputs(groups: list[tuple[Path, ...]], condition: Condition, stft: StftConfig,
                 desc: str, num_sources: int = 2,
                 keep: frozenset[str] | None = None) -> FeatureStats:
    """Open every shard (stage, STFT config, id alignment, finite values, label range) and
    gather the per-frequency feature statistics of the utterances in ``keep`` (all when
    ``None``); all before any training starts. Reads one shard at a time."""
    stats = FeatureStats(stft.num_freq)
    for group in progress(groups, desc=desc, unit="shard"):
        with Shard(group[0], stage="stft", stft=stft) as s:
            need = ["mix_logmag_db"] + (["source_mag"] if condition.labels == "gt" else [])
            for name in need:
                if name not in s:
                    raise BootsepError(f"has no '{name}'" + (": ground-truth conditions need a corpus "
                                       "with references" if name == "source_mag" else ""), s.path)
            feats = s.dataset("mix_logmag_db")[()]
            if feats.ndim != 2 or feats.shape[1] != stft.num_freq:
                raise BootsepError(f"mix_logmag_db has shape {feats.shape}, expected (frames, "
                                   f"{stft.num_freq})", s.path)
            feats = feats.astype(np.float32)
            if not np.isfinite(feats).all():
                raise BootsepError("features (mix_logmag_db) contain NaN or infinite values", s.path)
            if condition.labels == "gt":
                sources = s.dataset("source_mag").shape[1]
                if sources > num_sources:
                    raise BootsepError(f"has {sources} sources but train.num_sources is {num_sources}",
                                       s.path)
            if keep is None:
                stats.update(torch.from_numpy(feats)[None])
            else:
                rows = [feats[s.offsets[u]:s.offsets[u + 1]] for u, uid in enumerate(s.ids) if uid in keep]
                if rows:
                    stats.update(torch.from_numpy(np.concatenate(rows))[None])
            if condition.labels == "spatial":
                for path, stage in zip(group[1:], ("spatial", "confidence")):
                    with Shard(path, stage=stage, stft=stft) as other:
                        if other.ids != s.ids:
                            raise BootsepError(f"utterance ids do not line up with {s.path}; "
                                               "rerun the later stage", other.path)
                        if stage == "spatial":
                            labels = other.dataset("labels")[()]
                            if labels.size and int(labels.max()) >= num_sources:
                                raise BootsepError(f"has label {int(labels.max())} but train.num_sources "
                                                   f"is {num_sources}", other.path)
                        elif condition.uses_confidence:
                            for name in ("c_cl", "c_jsd", "c_post"):
                                values = other.dataset(name)[()].astype(np.float32)
                                if not np.isfinite(values).all():
                                    raise BootsepError(f"{name} contains NaN or infinite values", other.path)
                                if values.size and (values.min() < 0 or values.max() > 1.001):
                                    raise BootsepError(f"{name} lies outside [0, 1] "
                                                       f"({values.min():.3g} to {values.max():.3g})", other.path)
    return stats


def subset_ids(groups: list[tuple[Path, ...]], fraction: float, seed: int) -> frozenset[str] | None:
    """A seeded ``fraction`` of the training mixtures (at least one), or None for all."""
    if fraction >= 1:
        return None
    ids = []
    for group in groups:
        with Shard(group[0]) as s:
            ids.extend(s.ids)
    ids = sorted(ids)
    n = max(1, int(round(fraction * len(ids))))
    pick = np.random.default_rng([seed, 5]).permutation(len(ids))[:n]
    return frozenset(ids[i] for i in pick)


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _code_digest() -> str:
    """Hash of the trainer's source: a resume checkpoint from other code is not continued."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _input_files(groups: list[tuple[Path, ...]]) -> list:
    """Name, size and modification time of every input shard (cheap change detection)."""
    out = []
    for group in groups:
        for p in group:
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def _input_summaries(condition: Condition, root: Path) -> list:
    stages = ["stft"] + (["spatial", "confidence"] if condition.labels == "spatial" else [])
    out = []
    for stage in stages:
        for split in ("train", "valid"):
            p = root / stage / split / SUMMARY_NAME
            out.append(p.read_text() if p.is_file() else None)
    return out


def main(params_path: str | os.PathLike, condition_name: str, shard_root: Path = SHARD_ROOT,
         model_root: Path = MODEL_ROOT) -> None:
    params = load_params(params_path)
    for name in condition_names(params):   # e.g. a negative α anywhere in the list
        condition_from_params(params, name)
    condition = condition_from_params(params, condition_name)
    cfg = train_config(params)
    stft = stft_config(params)
    mcfg = model_config(params, stft.num_freq)
    torch.set_num_threads(max(1, int(cfg.torch_threads)))
    out = Path(model_root) / condition.name
    out.mkdir(parents=True, exist_ok=True)

    train_groups = shard_groups(condition, "train", Path(shard_root))
    valid_groups = shard_groups(condition, "valid", Path(shard_root))
    keep = subset_ids(train_groups, condition.fraction, cfg.seed)
    meta = {"condition": condition.to_dict(), "model_config": mcfg.to_dict(),
            "stft": asdict(stft), "train": asdict(cfg), "num_sources": cfg.num_sources,
            "train_mixtures": None if keep is None else len(keep)}
    fp = fingerprint(meta, _input_summaries(condition, Path(shard_root)),
                     _input_files(train_groups + valid_groups), _code_digest())

    model = init_model(mcfg, seed=cfg.seed)   # same initialisation for every condition (§3.3)
    stream = ShardStream(train_groups, condition, stft, seed=cfg.seed, max_frames=cfg.max_frames,
                         shuffle_buffer=cfg.shuffle_buffer, keep=keep)
    valid = ShardStream(valid_groups, condition, stft, seed=cfg.seed, max_frames=None, shuffle=False)
    trainer = Trainer(model, cfg, stream, valid, out, fp, meta)
    if trainer.try_resume() and not trainer.state.done:
        print(f"train {condition.name}: resuming after epoch {trainer.state.epoch}, "
              f"batch {trainer.state.position}", flush=True)
    else:   # a fresh run (a finished run is rerun only when DVC saw a change: retrain)
        trainer = Trainer(init_model(mcfg, seed=cfg.seed), cfg, stream, valid, out, fp, meta)
        for stale in (CHECKPOINT, BEST_MODEL, LOG_CSV, "metrics.json", "params.json"):
            (out / stale).unlink(missing_ok=True)
        check_inputs(valid_groups, condition, stft, f"check valid shards ({condition.name})",
                     cfg.num_sources)
        stats = check_inputs(train_groups, condition, stft, f"check train shards ({condition.name})",
                             cfg.num_sources, keep)
        trainer.model.set_stats(*stats.mean_std())
    write_text_atomic(out / "params.json", json.dumps(
        {**meta, "params_file": {k: v for k, v in params.items() if not k.startswith("_")}},
        indent=2, sort_keys=True, default=str) + "\n")
    try:
        state = trainer.run()
    except TrainingInterrupted as exc:
        print(f"train {condition.name}: {exc}", file=sys.stderr, flush=True)
        sys.exit(128 + exc.signum)
    write_metrics(out, state, {"condition": condition.name, "device": str(trainer.device),
                               "parameters": sum(p.numel() for p in trainer.model.parameters())})
    print(f"train {condition.name}: best valid loss {state.best_valid:.4g} -> {out / BEST_MODEL}")
