"""Streaming training examples from the HDF5 shards (never the whole set in memory).

:class:`ShardStream` is a torch ``IterableDataset`` over *shard groups* (the aligned
stft/spatial/confidence shards of one index). Each epoch it shuffles the shard order from
``(seed, epoch)``, splits the shards among loader workers, keeps a small shuffle buffer,
and crops every utterance to at most ``max_frames`` frames at a random offset (after taking one
phase of its frames for a model of ``frame_stride`` > 1: :func:`take_phase`). The
stream is a pure function of ``(seed, epoch)`` and the worker count, which is what makes
an interrupted epoch resumable by skipping the batches already seen.

Length buckets (``train.bucket``, :meth:`ShardStream.batches`): instead of drawing single
examples from the shuffle buffer, a worker fills the buffer (rounded up to whole batches),
sorts it by length, cuts it into batches and emits those in a seeded random order, so a batch
holds similar lengths (little padding, which the CPU BLSTM computes like real frames) while
the epoch stays shuffled. Every batch but each worker's last is full, so the batch count is
the unbucketed one.

At any time a worker holds one shard group's arrays plus its shuffle buffer, so memory does
not grow with the corpus.

The per-bin weights (§2.3, eq. 7) are computed on the training example itself, i.e. after
cropping: ``w = C(α) · |X| / Σ|X|`` with the sum over the crop, so every example's
magnitude shares sum to one and ``Σw`` measures the confidence-weighted data quantity.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from bootsep.config import UTTERANCE_WEIGHTINGS
from bootsep.pipeline.malloc import release_large_blocks
from bootsep.pipeline.padding import frames_valid, pad_stack
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.shards import Shard, check_aligned
from bootsep.train.augment import SpectralAugment
from bootsep.train.conditions import Condition
from bootsep.train.labels import ideal_binary_labels
from bootsep.train.model import frame_phase
from bootsep.train.weights import (
    confidence_map,
    linear_in_mass,
    magnitude_from_db,
    magnitude_share,
)

FRAME_KEYS = ("features", "labels", "confidence")


def read_group(group: Sequence[Path], condition: Condition, stft: StftConfig,
               keep: frozenset[str] | None = None) -> Iterator[dict]:
    """Raw examples of one shard group, in shard order (no crop, no weights yet).

    ``group`` is ``(stft_shard,)`` for ground-truth conditions and ``(stft, spatial,
    confidence)`` for spatial ones. Yields dicts with ``id``, ``features`` (T, F) float32
    log-magnitude dB of channel 0, ``labels`` (T, F) uint8 (widened in :func:`collate`) and
    ``confidence`` (T, F) float32 ``C(α)`` of eq. 7, or ``None`` where it is 1 (ground truth,
    α = 0).
    """
    with Shard(group[0], stage="stft", stft=stft) as s:
        ids = s.ids
        logmag = s.all_frames("mix_logmag_db")
        if condition.labels == "gt":
            sources = s.all_frames("source_mag")
    if condition.labels == "spatial":
        with Shard(group[1], stage="spatial", stft=stft) as sp, \
                Shard(group[2], stage="confidence", stft=stft) as cf:
            check_aligned(sp, s)                # (a closed shard keeps its ids and path)
            check_aligned(cf, s)
            labels = sp.all_frames("labels")
            if condition.uses_confidence:
                c_cl, c_jsd = cf.utterances("c_cl"), cf.utterances("c_jsd")
                c_post = cf.all_frames("c_post")
    for u, uid in enumerate(ids):
        if keep is not None and uid not in keep:
            continue
        conf = None
        if condition.labels == "gt":
            lab = ideal_binary_labels(sources[u])
        else:
            lab = labels[u]
            if condition.uses_confidence:
                conf = confidence_map(c_cl[u], c_jsd[u], c_post[u], condition.alpha)
        yield {"id": uid, "features": logmag[u].astype(np.float32),
               "labels": lab, "confidence": conf}


def frames_of(example: dict, sl: slice) -> dict:
    """The example with its per-frame arrays (:data:`FRAME_KEYS`) cut to the frames ``sl``."""
    return {**example, **{k: example[k][sl] for k in FRAME_KEYS if example.get(k) is not None}}


def take_phase(example: dict, stride: int, rng: np.random.Generator | None) -> dict:
    """One phase of the example's frames for a model of ``frame_stride`` ``stride``
    (:func:`~bootsep.train.model.frame_phase`): drawn from ``rng``, phase 0 without one (the
    validation loss); ``stride`` 1 returns the example and draws nothing."""
    if stride == 1:
        return example
    frames = example["features"].shape[0]
    phase = 0 if rng is None else int(rng.integers(min(stride, frames)))
    return frames_of(example, frame_phase(frames, stride, phase))


def crop(example: dict, max_frames: int | None, rng: np.random.Generator) -> dict:
    """A random window of at most ``max_frames`` frames (paper §3.2: sequences ≤ 400 frames)."""
    frames = example["features"].shape[0]
    if not max_frames or frames <= max_frames:
        return example
    start = int(rng.integers(0, frames - max_frames + 1))
    return frames_of(example, slice(start, start + max_frames))


def finish(example: dict, linear: bool = False) -> dict:
    """Add the loss weights ``w = C(α) · |X|/Σ|X|`` of the (cropped) example (§2.3); with
    ``linear`` (``train.utterance_weighting: linear``) a confidence-weighted example's weights
    are divided by ``√Σw`` (:func:`~bootsep.train.weights.linear_in_mass`: its loss then scales
    with its confidence mass, not its square). Without confidence (ground truth, α = 0) every
    example has ``Σw = 1`` and its weights are left as they are."""
    share = magnitude_share(magnitude_from_db(example["features"]))
    conf = example.get("confidence")
    weights = share if conf is None else (conf * share).astype(np.float32)
    if linear and conf is not None:
        weights = linear_in_mass(weights)
    return {"id": example["id"], "features": example["features"], "labels": example["labels"],
            "weights": weights}


class ShardStream(IterableDataset):
    """Seeded, resumable stream of training examples over shard groups."""

    def __init__(self, groups: Sequence[Sequence[Path]], condition: Condition, stft: StftConfig, *,
                 seed: int, max_frames: int | None = 400, shuffle: bool = True,
                 shuffle_buffer: int = 64, keep: frozenset[str] | None = None,
                 augment: SpectralAugment | None = None,
                 utterance_weighting: str = "quadratic", frame_stride: int = 1):
        self.groups = [tuple(Path(p) for p in g) for g in groups]
        self.condition, self.stft = condition, stft
        self.seed, self.max_frames = seed, max_frames
        self.shuffle, self.shuffle_buffer, self.keep = shuffle, max(1, shuffle_buffer), keep
        self.augment = augment if augment is not None and augment.active else None
        if utterance_weighting not in UTTERANCE_WEIGHTINGS:
            raise ValueError(f"utterance_weighting {utterance_weighting!r} is not one of "
                             f"{', '.join(UTTERANCE_WEIGHTINGS)}")
        self.linear = utterance_weighting == "linear"
        if not (isinstance(frame_stride, int) and frame_stride >= 1):
            raise ValueError(f"frame_stride must be an integer >= 1, got {frame_stride!r}")
        self.frame_stride = frame_stride
        self.epoch = 0
        self._counts: list[int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def shard_order(self, epoch: int | None = None) -> np.ndarray:
        """Indices of the shard groups in the order epoch ``epoch`` reads them."""
        order = np.arange(len(self.groups))
        if self.shuffle:
            epoch = self.epoch if epoch is None else epoch
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        return order

    def example_counts(self) -> list[int]:
        """Examples per shard group (after the ``keep`` filter); reads only the ids."""
        if self._counts is None:
            counts = []
            for g in self.groups:
                with Shard(g[0]) as s:
                    counts.append(len(s.ids) if self.keep is None
                                  else sum(uid in self.keep for uid in s.ids))
            self._counts = counts
        return self._counts

    def num_batches(self, batch_size: int, workers: int = 0) -> int:
        """Batches one epoch yields through a DataLoader with ``workers`` worker processes
        (each worker batches its own shards, so each has its own last, partial batch)."""
        counts = np.asarray(self.example_counts())
        order = self.shard_order()
        n = max(1, workers)
        return int(sum(-(-int(counts[order[w::n]].sum()) // batch_size) for w in range(n)))

    def _worker_examples(self) -> tuple[Iterator[dict], np.random.Generator]:
        """This worker's cropped, weighted examples in shard order, and its generator (which
        drew the crops and draws the shuffle)."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = self.shard_order()
        rng = np.random.default_rng([self.seed, self.epoch, worker, 1])

        def examples() -> Iterator[dict]:
            for gi in order[worker::workers]:
                for ex in read_group(self.groups[gi], self.condition, self.stft, self.keep):
                    ex = take_phase(ex, self.frame_stride, rng if self.shuffle else None)
                    ex = crop(ex, self.max_frames, rng)
                    yield finish(ex if self.augment is None else self.augment(ex, rng),
                                 self.linear)
        return examples(), rng

    def __iter__(self) -> Iterator[dict]:
        examples, rng = self._worker_examples()
        buffer: list[dict] = []
        for ex in examples:
            if not self.shuffle:
                yield ex
                continue
            buffer.append(ex)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))))

    def batches(self, batch_size: int) -> Iterator[list[dict]]:
        """Length-bucketed batches of this worker's examples (``train.bucket``).

        The buffer holds ``shuffle_buffer`` examples rounded up to a multiple of
        ``batch_size``; when full (and at the end, with what is left) it is sorted by length
        (stable, so ties keep stream order), cut into batches of ``batch_size`` and emptied
        in an order drawn from the worker's generator. Only the last flush can give a partial
        batch, so a worker yields ``ceil(examples / batch_size)`` batches, as unbucketed
        (:meth:`num_batches`). Unshuffled: consecutive examples, as the unbucketed loader.
        """
        examples, rng = self._worker_examples()
        size = batch_size * (-(-self.shuffle_buffer // batch_size)) if self.shuffle \
            else batch_size
        buffer: list[dict] = []
        ready: list[list[dict]] = []     # the previous flush's batches, still to be emitted
        for ex in examples:
            buffer.append(ex)
            # one batch out per batch_size examples in: the reading is spread over the
            # batches (the trainer never waits for a whole buffer), the order is unchanged
            if ready and len(buffer) % batch_size == 0:
                yield ready.pop(0)
            if len(buffer) == size:
                ready = list(self._flush(buffer, batch_size, rng))
                buffer = []
        yield from ready
        if buffer:
            yield from self._flush(buffer, batch_size, rng)

    def _flush(self, buffer: list[dict], batch_size: int,
               rng: np.random.Generator) -> Iterator[list[dict]]:
        if not self.shuffle:
            yield buffer
            return
        by_length = np.argsort([ex["features"].shape[0] for ex in buffer], kind="stable")
        cuts = [by_length[i:i + batch_size] for i in range(0, len(buffer), batch_size)]
        for c in rng.permutation(len(cuts)):
            yield [buffer[j] for j in cuts[c]]


def collate(examples: list[dict]) -> dict:
    """Pad a list of examples to the longest.

    Returns ``features`` (B, T, F), ``labels`` (B, T, F) long, ``weights`` (B, T, F),
    ``lengths`` (B,) and ``mask`` (B, T) bool (True on real frames). Padding has weight 0,
    so it adds nothing to the loss and gets no gradient.
    """
    # Filled with numpy (single-threaded, no OpenMP spin-waits on a busy machine), then wrapped.
    feats, lengths = pad_stack([e["features"] for e in examples])
    labels, _ = pad_stack([e["labels"] for e in examples])
    weights, _ = pad_stack([e["weights"] for e in examples])
    mask = frames_valid(lengths, feats.shape[1])
    feats = torch.from_numpy(feats.astype(np.float32, copy=False))
    weights = torch.from_numpy(weights)
    labels = torch.from_numpy(labels.astype(np.int64))
    lengths, mask = torch.from_numpy(lengths), torch.from_numpy(mask)
    return {"ids": [e["id"] for e in examples], "features": feats, "labels": labels,
            "weights": weights, "lengths": lengths, "mask": mask}


def worker_init(_worker_id: int) -> None:
    """Set up a loader worker process.

    - SIGINT/SIGTERM are left to the main process, which checkpoints and then stops the
      workers; otherwise a Ctrl-C (sent to the whole process group) can kill a worker while
      the main process waits for its batch, and the loader fails instead of the run being saved.
    - large batch buffers are returned to the OS on free, so the heap does not grow with the
      epoch (:func:`bootsep.pipeline.malloc.release_large_blocks`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    release_large_blocks()


class BucketedBatches(IterableDataset):
    """``stream``'s length-bucketed batches (:meth:`ShardStream.batches`) as a dataset whose
    items are whole batches (lists of examples), for a DataLoader with ``batch_size=None``.
    It reads the stream's epoch when iterated, so ``stream.set_epoch`` applies to it."""

    def __init__(self, stream: ShardStream, batch_size: int):
        self.stream, self.batch_size = stream, batch_size

    def __iter__(self) -> Iterator[list[dict]]:
        return self.stream.batches(self.batch_size)


def make_loader(stream: ShardStream, batch_size: int, workers: int = 0,
                pin_memory: bool = False, bucket: bool = False) -> DataLoader:
    """The trainer's DataLoader over ``stream``: padded batches from :func:`collate`.

    Each worker batches its own share of the shards, so the batch sequence is a pure function
    of ``(seed, epoch, workers)``; the base seed is fixed (the stream does its own seeding).
    ``bucket``: batches of similar lengths (:meth:`ShardStream.batches`), the same number.
    """
    data = BucketedBatches(stream, batch_size) if bucket else stream
    return DataLoader(data, batch_size=None if bucket else batch_size, collate_fn=collate,
                      num_workers=workers,
                      generator=torch.Generator().manual_seed(0),
                      worker_init_fn=worker_init if workers > 0 else None,
                      pin_memory=pin_memory, prefetch_factor=4 if workers > 0 else None)
