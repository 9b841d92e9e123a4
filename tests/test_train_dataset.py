"""Streaming examples from shard sets: padding and masks, crops, seeded order, workers."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bootsep.errors import BootsepError
from bootsep.pipeline.storage.shards import Shard, write_shard
from bootsep.train.conditions import Condition
from bootsep.train.dataset import ShardStream, collate, make_loader
from bootsep.train.inputs import check_inputs, shard_groups
from bootsep.train.synthetic import TINY_STFT, write_synthetic_split

GT = Condition("gt", "gt")
A1 = Condition("alpha_1", "spatial", 1.0, teacher="paper")
N_UTT, PER_SHARD = 30, 4          # 8 shards, the last one partial


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    ids = write_synthetic_split(root, "train", N_UTT, utterances_per_shard=PER_SHARD,
                                frames=(10, 45), seed=7)
    return root, ids


def _stream(root, cond=A1, **kw):
    kw = {"seed": 0, "max_frames": 30, "shuffle_buffer": 5, **kw}
    return ShardStream(shard_groups(cond, "train", root), cond, TINY_STFT, **kw)


def _originals(root):
    out = {}
    for (path,) in shard_groups(GT, "train", root):
        with Shard(path) as s:
            for u, uid in enumerate(s.ids):
                out[uid] = (s.frames("mix_logmag_db", u).astype(np.float32),
                            s.frames("source_mag", u).argmax(axis=1))
    return out


def _loader(stream, workers=0, batch_size=4):
    return DataLoader(stream, batch_size=batch_size, collate_fn=collate, num_workers=workers)


def test_padded_batches_with_masks(corpus):
    root, ids = corpus
    seen = 0
    for batch in _loader(_stream(root), batch_size=4):
        B, T, F = batch["features"].shape
        assert F == TINY_STFT.num_freq and B <= 4 and T == int(batch["lengths"].max())
        assert batch["mask"].dtype == torch.bool and batch["mask"].shape == (B, T)
        assert torch.equal(batch["mask"].sum(1), batch["lengths"])
        pad = ~batch["mask"]
        assert not batch["weights"][pad].any() and not batch["features"][pad].any()
        assert (batch["weights"][batch["mask"]] >= 0).all()
        assert batch["labels"].dtype == torch.long and int(batch["labels"].max()) <= 1
        seen += B
    assert seen == N_UTT


def test_crop_is_a_window_of_at_most_max_frames(corpus):
    root, _ = corpus
    orig = _originals(root)
    cropped = 0
    for ex in _stream(root, cond=GT, max_frames=16):
        feats, labels = orig[ex["id"]]
        t = ex["features"].shape[0]
        assert t == min(16, feats.shape[0])
        starts = [s for s in range(feats.shape[0] - t + 1)
                  if np.array_equal(feats[s:s + t], ex["features"])]
        assert starts, ex["id"]
        np.testing.assert_array_equal(ex["labels"], labels[starts[0]:starts[0] + t])  # IBM labels
        cropped += t < feats.shape[0]
    assert cropped > 10
    full = {ex["id"]: ex["features"] for ex in _stream(root, cond=GT, max_frames=None)}
    assert all(np.array_equal(full[k], v[0]) for k, v in orig.items())


def _signature(stream):
    return [(ex["id"], ex["features"].shape[0], float(ex["features"][0, 0]),
             float(ex["weights"].sum())) for ex in stream]


def test_deterministic_per_seed_and_epoch(corpus):
    root, _ = corpus
    a, b = _stream(root), _stream(root)
    for epoch in (0, 3):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        assert _signature(a) == _signature(b)
        assert _signature(a) == _signature(a)          # re-iterating repeats the epoch
    a.set_epoch(0)
    first = _signature(a)
    a.set_epoch(1)
    assert [x[0] for x in _signature(a)] != [x[0] for x in first]
    c = _stream(root, seed=1)
    assert [x[0] for x in _signature(c)] != [x[0] for x in first]


def test_shard_order_shuffled_per_epoch(corpus):
    root, _ = corpus
    stream = _stream(root, shuffle_buffer=1)       # buffer of 1: examples come in shard order
    n = len(stream.groups)
    orders = [tuple(stream.shard_order(e)) for e in range(4)]
    assert all(sorted(o) == list(range(n)) for o in orders)
    assert len(set(orders)) == 4
    for epoch in range(2):
        stream.set_epoch(epoch)
        shard_of = [int(ex["id"].split("-")[1]) // PER_SHARD for ex in stream]
        blocks = [s for i, s in enumerate(shard_of) if i == 0 or s != shard_of[i - 1]]
        assert blocks == list(stream.shard_order(epoch))
    unshuffled = _stream(root, shuffle=False)
    assert [ex["id"] for ex in unshuffled] == sorted(ex["id"] for ex in unshuffled)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("cond", [GT, A1])
def test_workers_give_the_same_multiset(corpus, cond):
    root, ids = corpus
    stream = _stream(root, cond=cond)
    stream.set_epoch(2)
    counts = {}
    for workers in (0, 2, 3):
        loader = _loader(stream, workers, batch_size=3)
        got = Counter(i for batch in loader for i in batch["ids"])
        counts[workers] = got
        batches = sum(1 for _ in _loader(stream, workers, batch_size=3))
        assert batches == stream.num_batches(3, workers)
    assert counts[0] == counts[2] == counts[3] == Counter(ids)


def test_keep_subset(corpus):
    root, ids = corpus
    keep = frozenset(ids[::7])
    stream = _stream(root, keep=keep)
    assert sorted(ex["id"] for ex in stream) == sorted(keep)
    assert sum(stream.example_counts()) == len(keep)
    got = {i for b in _loader(stream, workers=2) for i in b["ids"]}
    assert got == keep


@pytest.mark.parametrize("stage", ["spatial", "confidence"])
def test_shards_that_do_not_line_up_are_refused(tmp_path, stage):
    """Ids of the spatial and confidence shards are checked against the stft shard."""
    write_synthetic_split(tmp_path, "train", 6, utterances_per_shard=3, seed=1)
    write_synthetic_split(tmp_path / "other", "train", 6, utterances_per_shard=3, seed=1)
    bad = tmp_path / stage / "paper" / "train" / "shard-00001.h5"
    with Shard(tmp_path / "other" / stage / "paper" / "train" / "shard-00000.h5") as s:
        frames = {n: s.all_frames(n) for n in s.names()
                  if n in ("labels", "posteriors", "c_post")}
        utts = {n: s.utterances(n) for n in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence")
                if n in s}
        ids = list(reversed(s.ids))                          # the right count, the wrong ids
    write_shard(bad, stage=stage, split="train", index=1, ids=ids, stft=TINY_STFT,
                frames=frames, utterances=utts)
    stream = _stream(tmp_path, shuffle=False)
    with pytest.raises(BootsepError, match=rf"{stage}/paper/train/shard-00001.h5: utterance ids "
                                           r"do not line up .*first difference at position 0"):
        list(stream)
    with pytest.raises(BootsepError, match="do not line up"):
        check_inputs(shard_groups(A1, "train", tmp_path), A1, TINY_STFT, "check")


# -- length buckets (train.bucket) -------------------------------------------------------------

def _padding(batches) -> float:
    """Padded share of the frames the batches hold (B x T each)."""
    real = sum(int(b["mask"].sum()) for b in batches)
    return 1 - real / sum(b["mask"].numel() for b in batches)


def _epoch(stream, epoch, workers=0, batch_size=4, bucket=True):
    stream.set_epoch(epoch)
    return list(make_loader(stream, batch_size, workers, bucket=bucket))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_bucketed_epoch_holds_every_example_once_in_the_counted_batches(corpus, workers):
    root, ids = corpus
    stream = _stream(root, max_frames=None, shuffle_buffer=6)     # flushes of 8 examples
    for epoch in (0, 1):
        batches = _epoch(stream, epoch, workers, batch_size=4)
        got = [i for b in batches for i in b["ids"]]
        assert sorted(got) == sorted(ids)                         # each exactly once
        assert len(batches) == stream.num_batches(4, workers)
        assert sum(len(b["ids"]) < 4 for b in batches) <= max(1, workers)   # one last per worker
        for b in batches:                                          # padded as collate pads
            assert int(b["lengths"].max()) == b["features"].shape[1]
            assert torch.equal(b["mask"].sum(1), b["lengths"])


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """96 utterances of 10 to 80 frames (uniform), 8 per shard."""
    root = tmp_path_factory.mktemp("varied")
    write_synthetic_split(root, "train", 96, utterances_per_shard=8, frames=(10, 80), seed=3)
    return root


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_bucketing_cuts_padding_far_below_random_batches(varied):
    stream = _stream(varied, cond=GT, max_frames=None, shuffle_buffer=40)
    for workers in (0, 2):
        bucketed = [_padding(_epoch(stream, e, workers)) for e in range(2)]
        plain = [_padding(_epoch(stream, e, workers, bucket=False)) for e in range(2)]
        assert min(plain) > 0.2, plain                  # random batches of 4: about 30 %
        assert max(bucketed) < min(plain) / 3, (bucketed, plain)    # measured: 8 %


def test_one_buffer_gives_contiguous_length_ranges_in_shuffled_order(corpus):
    """A buffer holding the whole split: the batches cut the sorted lengths into consecutive
    runs (no two batches' length ranges overlap), and come in a different order per epoch."""
    root, _ = corpus
    stream = _stream(root, max_frames=None, shuffle_buffer=64)
    orders = []
    for epoch in range(3):
        batches = _epoch(stream, epoch)
        spans = sorted((int(b["lengths"].min()), int(b["lengths"].max())) for b in batches)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans
        assert sum(len(b["ids"]) < 4 for b in batches) == 1
        assert _padding(batches) < 0.06
        orders.append([int(b["lengths"].min()) for b in batches])
    assert len({tuple(o) for o in orders}) == 3 and orders[0] != sorted(orders[0])


def _batch_signature(batches):
    return [(tuple(b["ids"]), b["features"].numpy().tobytes(), b["weights"].numpy().tobytes())
            for b in batches]


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
def test_bucketed_batches_are_deterministic_per_seed_epoch_and_workers(corpus):
    root, _ = corpus
    a, b = _stream(root, max_frames=30), _stream(root, max_frames=30)
    for workers in (0, 2):
        for epoch in (0, 2):
            assert _batch_signature(_epoch(a, epoch, workers)) == \
                _batch_signature(_epoch(b, epoch, workers))
    first = [x[0] for x in _batch_signature(_epoch(a, 0))]
    assert first != [x[0] for x in _batch_signature(_epoch(a, 1))]
    assert first != [x[0] for x in _batch_signature(_epoch(_stream(root, seed=1), 0))]
    # each example is a window of at most max_frames of its utterance, seeded crops differ
    orig, starts = _originals(root), []
    for bt in _epoch(a, 0):
        for i, f, n in zip(bt["ids"], bt["features"].numpy(), bt["lengths"].tolist()):
            full = orig[i][0]
            assert n == min(30, len(full))
            starts += [s for s in range(len(full) - n + 1) if np.array_equal(full[s:s + n], f[:n])]
    assert len(starts) == N_UTT and len(set(starts)) > 3


def test_unshuffled_bucketing_is_plain_batching(corpus):
    root, _ = corpus
    stream = _stream(root, shuffle=False)
    assert _batch_signature(_epoch(stream, 0)) == _batch_signature(_epoch(stream, 0, bucket=False))


def test_bucketing_reads_one_batch_of_examples_per_batch_out(corpus, monkeypatch):
    """After the first buffer, each batch out costs reading batch_size examples (so the
    trainer never waits for a whole buffer to be read), and the batches are the same."""
    root, _ = corpus
    stream = _stream(root, max_frames=None, shuffle_buffer=12)
    expected = [[e["id"] for e in b] for b in stream.batches(4)]
    inner, pulled = stream._worker_examples, [0]

    def counting():
        examples, rng = inner()

        def gen():
            for ex in examples:
                pulled[0] += 1
                yield ex
        return gen(), rng

    monkeypatch.setattr(stream, "_worker_examples", counting)
    got, reads = [], []
    for batch in stream.batches(4):
        reads.append(pulled[0])
        got.append([e["id"] for e in batch])
    assert got == expected and reads[0] == 12 + 4
    steps = [b - a for a, b in zip(reads, reads[1:])]
    assert max(steps) == 4, steps
