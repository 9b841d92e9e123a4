"""What a training run reads: the shard groups of a condition, their checks, the subset.

:func:`check_inputs` opens every shard before any training starts (stage, STFT config, id
alignment, finite values, label range) and gathers the feature statistics;
:func:`subset_ids` draws the seeded fraction of a ``gt_subset``-style condition; the
fingerprint helpers decide whether a checkpoint may be resumed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.layout import SHARD_ROOT, SUMMARY_NAME
from bootsep.pipeline.storage.shards import Shard, aligned_shard_paths, check_aligned, shard_paths
from bootsep.progress import progress
from bootsep.train.conditions import Condition
from bootsep.train.model import FeatureStats

MODEL_ROOT = Path("data/models")


def shard_groups(condition: Condition, split: str,
                 root: Path = SHARD_ROOT) -> list[tuple[Path, ...]]:
    """Aligned shard paths of the stages a condition reads (errors name the missing folder)."""
    if condition.labels == "gt":
        return [(p,) for p in shard_paths(root / "stft" / split)]
    return aligned_shard_paths(root / "stft" / split,
                               root / "spatial" / condition.teacher / split,
                               root / "confidence" / condition.teacher / split)


def references_present(groups: list[tuple[Path, ...]]) -> bool:
    """Whether any stft shard of ``groups`` holds source images (``source_mag``): False for a
    corpus without references, on which no ground-truth condition can be trained."""
    for group in groups:
        with Shard(group[0], stage="stft") as s:
            if "source_mag" in s:
                return True
    return False


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
                    raise BootsepError(f"has no '{name}'"
                                       + (": ground-truth conditions need a corpus with references"
                                          if name == "source_mag" else ""), s.path)
            feats = s.dataset("mix_logmag_db")[()]
            if feats.ndim != 2 or feats.shape[1] != stft.num_freq:
                raise BootsepError(f"mix_logmag_db has shape {feats.shape}, expected (frames, "
                                   f"{stft.num_freq})", s.path)
            feats = feats.astype(np.float32)
            if not np.isfinite(feats).all():
                raise BootsepError("features (mix_logmag_db) contain NaN or infinite values",
                                   s.path)
            if condition.labels == "gt":
                sources = s.dataset("source_mag").shape[1]
                if sources > num_sources:
                    raise BootsepError(f"has {sources} sources but train.num_sources is "
                                       f"{num_sources}", s.path)
            if keep is None:
                stats.update(torch.from_numpy(feats)[None])
            else:
                rows = [feats[s.offsets[u]:s.offsets[u + 1]]
                        for u, uid in enumerate(s.ids) if uid in keep]
                if rows:
                    stats.update(torch.from_numpy(np.concatenate(rows))[None])
            if condition.labels == "spatial":
                for path, stage in zip(group[1:], ("spatial", "confidence")):
                    with Shard(path, stage=stage, stft=stft) as other:
                        check_aligned(other, s)
                        if stage == "spatial":
                            labels = other.dataset("labels")[()]
                            if labels.size and int(labels.max()) >= num_sources:
                                raise BootsepError(f"has label {int(labels.max())} but "
                                                   f"train.num_sources is {num_sources}",
                                                   other.path)
                        elif condition.uses_confidence:
                            for name in ("c_cl", "c_jsd", "c_post"):
                                values = other.dataset(name)[()].astype(np.float32)
                                if not np.isfinite(values).all():
                                    raise BootsepError(f"{name} contains NaN or infinite values",
                                                       other.path)
                                if values.size and (values.min() < 0 or values.max() > 1.001):
                                    raise BootsepError(f"{name} lies outside [0, 1] "
                                                       f"({values.min():.3g} to "
                                                       f"{values.max():.3g})", other.path)
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


def code_digest(packages: tuple[str, ...] = ("bootsep", "bootsep.pipeline", "bootsep.train",
                                             "bootsep.stages")) -> str:
    """Hash of the source of every module in ``packages`` (recursively): the trainer and all it
    runs from the core and ``pipeline`` (eq. 7's confidence, the shard readers, ...), so a
    resume checkpoint written by other code is not continued. A superset of what training
    imports, on purpose: a needless fresh start costs time, a wrong resume a wrong model."""
    import importlib

    files = set()
    for name in packages:
        root = Path(importlib.import_module(name).__file__).parent
        files.update(root.rglob("*.py") if name != "bootsep" else root.glob("*.py"))
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{path.parent.name}/{path.name}".encode())   # not where the clone lives
        h.update(path.read_bytes())
    return h.hexdigest()


def input_files(groups: list[tuple[Path, ...]]) -> list:
    """Name, size and modification time of every input shard (cheap change detection)."""
    out = []
    for group in groups:
        for p in group:
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def input_summaries(condition: Condition, root: Path) -> list:
    stages = ["stft"] + ([f"spatial/{condition.teacher}", f"confidence/{condition.teacher}"]
                         if condition.labels == "spatial" else [])
    out = []
    for stage in stages:
        for split in ("train", "valid"):
            p = root / stage / split / SUMMARY_NAME
            out.append(p.read_text() if p.is_file() else None)
    return out
