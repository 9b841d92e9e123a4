"""The self-training prior (evaluate/relabel.py): the student's masks, soft or binary, as
per-bin source probabilities for the delay teacher's product of experts; keep_confident's
threshold against a brute-force search."""

import numpy as np
import pytest

from bootsep.evaluate.inference import soft_masks
from bootsep.evaluate.relabel import keep_threshold, student_prior


def test_student_prior_mixes_the_masks_with_the_floor_and_pads_uniformly():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 4, 3))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    soft = soft_masks(emb, rng.normal(size=(2, 3)), 2.0)                   # (K, T, F)
    binary = (soft >= 0.5).astype(np.float32)
    binary[1] = 1.0 - binary[0]
    prior = student_prior([soft, binary[:, :3]], 0.02, num_frames=6)       # (B, T, F, K)
    assert prior.shape == (2, 6, 4, 2)
    np.testing.assert_allclose(prior.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(prior[0, :5], 0.98 * np.moveaxis(soft, 0, -1) + 0.01, atol=1e-6)
    np.testing.assert_allclose(prior[1, :3], 0.98 * np.moveaxis(binary[:, :3], 0, -1) + 0.01)
    np.testing.assert_array_equal(prior[0, 5:], 0.5)                      # padding: uniform
    np.testing.assert_array_equal(prior[1, 3:], 0.5)
    assert prior.min() > 0.0                          # a floor > 0 never rules a source out


def _brute_force_keep(conf, acc_t, acc_r):
    """Every threshold among the confidences (and inf): mean switched accuracy; the best, the
    fewest mixtures kept among ties."""
    best = (float(np.mean(acc_r)), 0, float("inf"))
    for t in sorted(set(conf.tolist()), reverse=True):
        keep = conf >= t
        mean = float(np.mean(np.where(keep, acc_t, acc_r)))
        if mean > best[0] + 1e-12:
            best = (mean, int(keep.sum()), t)
    return best


def test_keep_threshold_is_the_best_cut_by_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        conf = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], n) if trial % 2 else rng.uniform(size=n)
        acc_t, acc_r = rng.uniform(0.5, 1.0, n), rng.uniform(0.5, 1.0, n)
        t, mean, kept = keep_threshold(conf, acc_t, acc_r)
        want_mean, want_kept, want_t = _brute_force_keep(conf, acc_t, acc_r)
        assert mean == pytest.approx(want_mean) and kept == want_kept and t == want_t
        assert kept == int((conf >= t).sum())
        # the switched labels are never worse than relabelling every mixture
        assert mean >= acc_r.mean() - 1e-12


def test_keep_threshold_keeps_the_confident_mixtures_where_the_teacher_is_better():
    conf = np.array([0.9, 0.8, 0.2, 0.1])
    t, mean, kept = keep_threshold(conf, np.array([0.95, 0.9, 0.6, 0.5]),
                                   np.array([0.7, 0.8, 0.9, 0.9]))
    assert (t, kept) == (0.8, 2) and mean == pytest.approx((0.95 + 0.9 + 0.9 + 0.9) / 4)
    t, mean, kept = keep_threshold(conf, np.full(4, 0.5), np.full(4, 0.9))    # never better
    assert (t, kept) == (float("inf"), 0) and mean == pytest.approx(0.9)
    with pytest.raises(ValueError):
        keep_threshold(conf, np.ones(3), np.ones(4))
