"""Streaming training examples from the HDF5 shards (never the whole set in memory).

:class:`ShardStream` is a torch ``IterableDataset`` over *shard groups* (the aligned
stft/spatial/confidence shards of one index). Each epoch it shuffles the shard order from
``(seed, epoch)``, splits the shards among loader workers, keeps a small shuffle buffer,
and crops every utterance to at most ``max_frames`` frames at a random offset. The
stream is a pure function of ``(seed, epoch)`` and the worker count, which is what makes
an interrupted epoch resumable by skipping the batches already seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from bootsep.pipeline.shards import Shard, check_aligned
from bootsep.pipeline.stft import StftConfig
from bootsep.train.conditions import Condition
from bootsep.train.weights import magnitude_from_db, training_weights


def read_group(group: Sequence[Path], condition: Condition, stft: StftConfig,
               keep: frozenset[str] | None = None) -> Iterator[dict]:
    """Training examples of one shard group, in shard order.

    ``group`` is ``(stft_shard,)`` for ground-truth conditions and ``(stft, spatial,
    confidence)`` for spatial ones. Yields dicts with ``id``, ``features`` (T, F) float32
    log-magnitude dB of channel 0, ``labels`` (T, F) int64 and ``weights`` (T, F) float32.
    """
    with Shard(group[0], stage="stft", stft=stft) as s:
        ids = s.ids
        logmag = s.all_frames("mix_logmag_db")
        if condition.labels == "gt":
            sources = s.all_frames("source_mag")
    if condition.labels == "spatial":
        with Shard(group[0]) as s0, Shard(group[1], stage="spatial", stft=stft) as sp, \
                Shard(group[2], stage="confidence", stft=stft) as cf:
            check_aligned(sp, s0)
            check_aligned(cf, s0)
            labels = sp.all_frames("labels")
            if condition.uses_confidence:
                c_cl, c_jsd = cf.utterances("c_cl"), cf.utterances("c_jsd")
                c_post = cf.all_frames("c_post")
    for u, uid in enumerate(ids):
        if keep is not None and uid not in keep:
            continue
        feats = logmag[u].astype(np.float32)
        mag = magnitude_from_db(feats)
        if condition.labels == "gt":
            lab = np.argmax(sources[u], axis=1)                # (T, S, F) -> (T, F): ideal binary labels
            w = training_weights(mag, 0.0)
        else:
            lab = labels[u].astype(np.int64)
            w = (training_weights(mag, condition.alpha, c_cl[u], c_jsd[u], c_post[u])
                 if condition.uses_confidence else training_weights(mag, 0.0))
        yield {"id": uid, "features": feats, "labels": lab.astype(np.int64), "weights": w}


def crop(example: dict, max_frames: int, rng: np.random.Generator) -> dict:
    """A random window of at most ``max_frames`` frames (paper §3.2: sequences ≤ 400 frames)."""
    frames = example["features"].shape[0]
    if frames <= max_frames:
        return example
    start = int(rng.integers(0, frames - max_frames + 1))
    sl = slice(start, start + max_frames)
    return {**example, **{k: example[k][sl] for k in ("features", "labels", "weights")}}


class ShardStream(IterableDataset):
    """Seeded, resumable stream of training examples over shard groups."""

    def __init__(self, groups: Sequence[Sequence[Path]], condition: Condition, stft: StftConfig, *,
                 seed: int, max_frames: int | None = 400, shuffle: bool = True,
                 shuffle_buffer: int = 64, keep: frozenset[str] | None = None):
        self.groups = [tuple(Path(p) for p in g) for g in groups]
        self.condition, self.stft = condition, stft
        self.seed, self.max_frames = seed, max_frames
        self.shuffle, self.shuffle_buffer, self.keep = shuffle, max(1, shuffle_buffer), keep
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = np.arange(len(self.groups))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        rng = np.random.default_rng([self.seed, self.epoch, worker, 1])
        buffer: list[dict] = []
        for gi in order[worker::workers]:
            for ex in read_group(self.groups[gi], self.condition, self.stft, self.keep):
                if self.max_frames:
                    ex = crop(ex, self.max_frames, rng)
                if not self.shuffle:
                    yield ex
                    continue
                buffer.append(ex)
                if len(buffer) >= self.shuffle_buffer:
                    yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))


def collate(examples: list[dict]) -> dict:
    """Pad a list of examples to the longest; padding has weight 0 (so no loss, no gradient)."""
    lengths = torch.tensor([e["features"].shape[0] for e in examples], dtype=torch.long)
    t_max, n_freq = int(lengths.max()), examples[0]["features"].shape[1]
    feats = torch.zeros(len(examples), t_max, n_freq)
    labels = torch.zeros(len(examples), t_max, n_freq, dtype=torch.long)
    weights = torch.zeros(len(examples), t_max, n_freq)
    for i, e in enumerate(examples):
        t = e["features"].shape[0]
        feats[i, :t] = torch.from_numpy(e["features"])
        labels[i, :t] = torch.from_numpy(e["labels"])
        weights[i, :t] = torch.from_numpy(e["weights"])
    return {"ids": [e["id"] for e in examples], "features": feats, "labels": labels,
            "weights": weights, "lengths": lengths}
