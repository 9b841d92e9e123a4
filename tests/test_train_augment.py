"""Spectral augmentation of training examples (train/augment.py): the warp against its forward
map and np.interp, the tilt, labels that move with the bins, and the stream that applies it."""

from __future__ import annotations

import numpy as np
import pytest

from bootsep.train.augment import BOUNDARY, SpectralAugment, warp_example, warp_source_bins
from bootsep.train.conditions import Condition
from bootsep.train.dataset import ShardStream
from bootsep.train.inputs import shard_groups
from bootsep.train.synthetic import TINY_STFT, write_synthetic_split
from bootsep.train.weights import magnitude_from_db, magnitude_share

F = 129
A1 = Condition("alpha_1", "spatial", 1.0, teacher="paper")


def _forward(f: np.ndarray, a: float, s: float) -> np.ndarray:
    """VTLP's forward map written out (Jaitly & Hinton 2013, with the boundary as a fraction of
    Nyquist): linear by a below b, the straight line from (b, a b) to (s, s) above it."""
    b = BOUNDARY * s * min(a, 1.0) / a
    return np.array([a * x if x <= b else a * b + (x - b) * (s - a * b) / (s - b) for x in f])


def _example(rng, frames=12, conf=True):
    return {"id": "u", "features": rng.normal(size=(frames, F)).astype(np.float32) * 10,
            "labels": rng.integers(0, 2, size=(frames, F)).astype(np.uint8),
            "confidence": rng.uniform(size=(frames, F)).astype(np.float32) if conf else None}


@pytest.mark.parametrize("a", [0.8, 0.9, 1.0, 1.1, 1.25])
def test_source_bins_invert_the_forward_warp(a):
    src = warp_source_bins(F, a)
    assert src[0] == 0 and src[-1] == pytest.approx(F - 1)
    assert np.all(np.diff(src) > 0)
    np.testing.assert_allclose(_forward(src, a, F - 1.0), np.arange(F), atol=1e-9)


def test_identity_when_off():
    rng = np.random.default_rng(0)
    ex = _example(rng)
    out = warp_example(ex, 1.0, 0.0)
    for key in ("features", "labels", "confidence"):
        np.testing.assert_array_equal(out[key], ex[key])
    assert not SpectralAugment().active
    assert SpectralAugment((0.9, 1.1), 0.0).active and SpectralAugment((1, 1), 3.0).active


@pytest.mark.parametrize("a", [0.85, 1.15])
def test_features_are_interpolated_between_bins_as_np_interp(a):
    rng = np.random.default_rng(1)
    ex = _example(rng)
    out = warp_example(ex, a, 0.0)
    src = warp_source_bins(F, a)
    ref = np.stack([np.interp(src, np.arange(F), row) for row in ex["features"]])
    np.testing.assert_allclose(out["features"], ref, rtol=1e-5, atol=1e-4)
    assert out["features"].dtype == np.float32 and out["features"].shape == ex["features"].shape


def test_a_harmonic_moves_by_the_warp_factor():
    feats = np.full((3, F), -60.0, np.float32)
    feats[:, 40] = 0.0                               # a peak at bin 40 (below the boundary)
    ex = {"id": "u", "features": feats, "labels": np.zeros((3, F), np.uint8), "confidence": None}
    for a in (0.9, 1.1):
        peak = warp_example(ex, a, 0.0)["features"][0].argmax()
        assert abs(peak - 40 * a) <= 0.5


def test_tilt_is_a_line_from_minus_half_to_plus_half():
    feats = np.zeros((4, F), np.float32)
    ex = {"id": "u", "features": feats, "labels": np.zeros((4, F), np.uint8), "confidence": None}
    out = warp_example(ex, 1.0, 6.0)["features"]
    np.testing.assert_allclose(out[:, 0], -3.0, atol=1e-6)
    np.testing.assert_allclose(out[:, -1], 3.0, atol=1e-6)
    np.testing.assert_allclose(np.diff(out, axis=1), 6.0 / (F - 1), atol=1e-5)
    assert abs(out.mean()) < 1e-5


@pytest.mark.parametrize("a", [0.85, 1.15])
def test_labels_and_confidence_move_with_the_bins(a):
    """Labels in wide blocks, features that say which block a bin is in: after the warp the
    labels still agree with the features everywhere but next to a block edge."""
    blocks = (np.arange(F) // 16) % 2
    feats = np.tile(np.where(blocks == 1, 10.0, -10.0).astype(np.float32), (5, 1))
    conf = np.tile(np.linspace(0, 1, F, dtype=np.float32), (5, 1))
    ex = {"id": "u", "features": feats, "labels": np.tile(blocks.astype(np.uint8), (5, 1)),
          "confidence": conf}
    out = warp_example(ex, a, 0.0)
    agree = (out["features"] > 0) == (out["labels"] == 1)
    edge = np.abs(out["features"]) < 10.0             # interpolated across a block edge
    assert agree[~edge].all() and (~edge).mean() > 0.7
    near = np.rint(warp_source_bins(F, a)).astype(int)
    np.testing.assert_array_equal(out["confidence"], conf[:, near])


def test_draws_from_the_generator_within_the_ranges():
    aug = SpectralAugment((0.9, 1.1), 4.0)
    feats = np.zeros((2, F), np.float32)
    feats[:, 30] = 1.0
    ex = {"id": "u", "features": feats, "labels": np.zeros((2, F), np.uint8), "confidence": None}
    outs = [aug(ex, np.random.default_rng(s))["features"] for s in range(20)]
    tilts = [o[0, -1] - o[0, 0] for o in outs]        # the harmonic at 30 stays off the edges
    assert all(-4.0 <= t <= 4.0 for t in tilts) and np.std(tilts) > 0.5
    again = [aug(ex, np.random.default_rng(s))["features"] for s in range(20)]
    assert all(np.array_equal(x, y) for x, y in zip(outs, again))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_split(root, "train", 12, utterances_per_shard=4, frames=(10, 30), seed=3)
    return root


def _examples(root, augment, cond=A1, shuffle=True, max_frames=20):
    stream = ShardStream(shard_groups(cond, "train", root), cond, TINY_STFT, seed=0,
                         max_frames=max_frames, shuffle_buffer=4, shuffle=shuffle,
                         augment=augment)
    return [(ex["id"], ex["features"], ex["labels"], ex["weights"]) for ex in stream]


def test_stream_without_augmentation_is_unchanged(corpus):
    plain = _examples(corpus, None)
    off = _examples(corpus, SpectralAugment())
    assert [x[0] for x in plain] == [x[0] for x in off]
    for p, o in zip(plain, off):
        for i in (1, 2, 3):
            np.testing.assert_array_equal(p[i], o[i])


def test_stream_applies_one_draw_per_example_then_the_weights(corpus):
    """Unshuffled and uncropped, the worker's generator draws only the augmentation, so each
    example must be the plain one warped by the replayed draws, and its weights the magnitude
    shares of the augmented features (ground truth: no confidence)."""
    gt = Condition("gt", "gt")
    aug = SpectralAugment((0.85, 1.15), 6.0)
    plain = _examples(corpus, None, gt, shuffle=False, max_frames=None)
    got = _examples(corpus, aug, gt, shuffle=False, max_frames=None)
    rng = np.random.default_rng([0, 0, 0, 1])         # ShardStream's worker generator, epoch 0
    assert [x[0] for x in got] == [x[0] for x in plain]
    for p, g in zip(plain, got):
        want = aug({"id": p[0], "features": p[1], "labels": p[2], "confidence": None}, rng)
        np.testing.assert_array_equal(g[1], want["features"])
        np.testing.assert_array_equal(g[2], want["labels"])
        np.testing.assert_allclose(g[3], magnitude_share(magnitude_from_db(g[1])), rtol=1e-6)
        assert not np.array_equal(g[1], p[1])


def test_stream_augments_deterministically(corpus):
    aug = SpectralAugment((0.85, 1.15), 6.0)
    one, two = _examples(corpus, aug), _examples(corpus, aug)
    assert [x[0] for x in one] == [x[0] for x in two]
    assert all(np.array_equal(x[1], y[1]) and np.array_equal(x[3], y[3])
               for x, y in zip(one, two))
