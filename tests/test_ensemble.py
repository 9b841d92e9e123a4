"""Ensemble choices of paper §3.3 (True = spatial)."""

import numpy as np
import pytest

from bootsep.evaluate.ensemble import (
    choose_confidence,
    choose_oracle,
    choose_random,
    confidence_threshold,
)


def test_threshold_is_validation_25th_percentile():
    valid = np.random.default_rng(0).lognormal(size=37)
    assert confidence_threshold(valid) == np.percentile(valid, 25)
    assert confidence_threshold(valid, 25) == np.percentile(valid, 25, method="linear")
    assert confidence_threshold(np.append(valid, np.nan), 40) == np.percentile(valid, 40)
    with pytest.raises(ValueError):
        confidence_threshold([np.nan])


def test_choose_confidence():
    conf = np.array([0.1, 0.5, 0.9, np.nan, 0.5])
    np.testing.assert_array_equal(choose_confidence(conf, 0.5), [False, False, True, False, False])
    valid = np.linspace(0, 1, 101)
    test = np.random.default_rng(1).random(1000)
    share = choose_confidence(test, confidence_threshold(valid)).mean()
    assert 0.7 < share < 0.8


def test_choose_random_is_seeded():
    a, b = choose_random(500, 3), choose_random(500, 3)
    assert a.dtype == bool and a.shape == (500,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, choose_random(500, 4))
    assert 0.4 < a.mean() < 0.6


def test_choose_oracle():
    s = np.array([3.0, 1.0, 2.0, np.nan, 0.0])
    m = np.array([1.0, 4.0, 2.0, 5.0, np.nan])
    np.testing.assert_array_equal(choose_oracle(s, m), [True, False, True, False, True])
