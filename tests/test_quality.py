"""Label quality (chi-squared partition distance, paper §3.4) and quantity."""

import numpy as np
import pytest

from bootsep.evaluate.quality import (
    contingency,
    label_quantity,
    mean_quality,
    partition_quality,
)

N = 10000


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_identical_partitions_have_quality_one(rng):
    y = rng.integers(0, 3, N)
    w = rng.random(N)
    assert partition_quality(y, y, w) == pytest.approx(1.0)


def test_label_permutation_changes_nothing(rng):
    y = rng.integers(0, 3, N)
    y_hat = np.where(rng.random(N) < 0.7, y, rng.integers(0, 3, N))
    w = rng.random(N)
    q = partition_quality(y, y_hat, w)
    relabelled = np.array([2, 0, 1])[y_hat]
    assert partition_quality(y, relabelled, w) == pytest.approx(q, abs=1e-12)
    assert partition_quality(np.array(["a", "b", "c"])[y], y_hat + 10, w) == pytest.approx(q, abs=1e-12)
    assert partition_quality(y_hat, y, w) == pytest.approx(q, abs=1e-12)          # symmetric
    assert partition_quality(1 - (y == 0), 1 - (y == 0), w) == pytest.approx(1.0)
    assert 0.2 < q < 0.9


@pytest.mark.parametrize("k", [2, 3])
def test_independent_partitions_near_zero(rng, k):
    q = partition_quality(rng.integers(0, k, N), rng.integers(0, k, N), rng.random(N))
    assert abs(q) < 0.05


def test_zero_weight_on_disagreements_gives_one(rng):
    y = rng.integers(0, 2, N)
    y_hat = rng.integers(0, 2, N)
    w = np.where(y == y_hat, rng.random(N), 0.0)
    assert partition_quality(y, y_hat, w) == pytest.approx(1.0)


def test_weights_only_matter_up_to_scale(rng):
    y, y_hat, w = rng.integers(0, 2, N), rng.integers(0, 2, N), rng.random(N)
    assert partition_quality(y, y_hat, 1e-6 * w) == pytest.approx(partition_quality(y, y_hat, w))


def test_formula_on_a_small_table():
    # n_rs = [[3, 1], [1, 3]] (unit weights): Σ = 2 (9/16 + 1/16) = 1.25, d = 2 − 1.25, quality = 0.25 / 1
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    y_hat = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(contingency(y, y_hat, np.ones(8)), [[3, 1], [1, 3]])
    assert partition_quality(y, y_hat, np.ones(8)) == pytest.approx(0.25)


def test_batched_equals_loop_and_edge_cases(rng):
    y, y_hat, w = rng.integers(0, 2, (5, 300)), rng.integers(0, 2, (5, 300)), rng.random((5, 300))
    y_hat[0] = y[0]
    batched = partition_quality(y, y_hat, w)
    assert batched.shape == (5,)
    np.testing.assert_allclose(batched, [partition_quality(a, b, c) for a, b, c in zip(y, y_hat, w)])
    assert np.isnan(partition_quality(y[0], y_hat[0], np.zeros(300)))
    assert partition_quality(np.zeros(4, int), np.zeros(4, int), np.ones(4)) == 1.0
    with pytest.raises(ValueError):
        partition_quality(y[0], y_hat[0], -w[0])


def test_mean_quality_weights_by_sum():
    assert mean_quality([1.0, 0.0, np.nan], [3.0, 1.0, 5.0]) == pytest.approx(0.75)
    assert mean_quality([0.5, 0.9], [2.0, 0.0]) == pytest.approx(0.5)
    assert np.isnan(mean_quality([np.nan], [1.0]))


def test_quantity_gt_is_one():
    gt = np.ones(40)                          # magnitude weights |X|/Σ|X| sum to 1 per mixture
    assert label_quantity(gt, gt) == 1.0
    assert label_quantity(gt[:2], gt) == pytest.approx(0.05)
    assert label_quantity(np.full(40, 0.2), gt) == pytest.approx(0.2)
