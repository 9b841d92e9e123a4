"""The ``iva`` spatial teacher (pipeline/teachers/iva.py): separation of free-field mixtures,
the glue around pyroomacoustics against a direct call, degenerate inputs, batch invariance,
determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_teacher_delay import CFG, FS, free_field_mixture, masked_si_sdri

from bootsep.errors import BootsepError
from bootsep.pipeline.stft import stft
from bootsep.pipeline.teachers.iva import iva_masks

N = 3 * FS                                     # IVA needs a few seconds of frames


@pytest.fixture(scope="module")
def pair_far():
    """Two talkers 100 degrees apart, 3 s, all 8 microphones: (mix, images, X (1, 8, T, F))."""
    mix, images = free_field_mixture(21, (200.0, 300.0), n=N)
    return mix, images, stft(mix, CFG)[None]


@pytest.fixture(scope="module")
def pair_near():
    """Two talkers 25 degrees apart (similar delays on every pair)."""
    mix, images = free_field_mixture(22, (20.0, 45.0), n=N)
    return mix, images, stft(mix, CFG)[None]


@pytest.mark.parametrize("C", [2, 4, 8])
@pytest.mark.parametrize("case", ["pair_far", "pair_near"])
def test_free_field_two_sources_separate(case, C, request):
    mix, images, X = request.getfixturevalue(case)
    res = iva_masks(X[:, :C])
    assert not res.degenerate[0] and res.n_iter[0] == 30
    assert masked_si_sdri(res, X, mix, images) >= 10.0
    # both sources get a real share of the reference (sorted, descending)
    assert res.shares[0, 1] > 0.2 and res.shares[0, 0] >= res.shares[0, 1]
    np.testing.assert_allclose(res.posteriors.sum(axis=-1), 1.0, atol=1e-5)
    assert np.array_equal(res.labels, res.posteriors.argmax(axis=-1))


def test_masks_match_a_direct_pyroomacoustics_call(pair_far):
    """Determined case: the ratio masks of AuxIVA's projected-back outputs, computed straight
    from ``auxiva(..., proj_back=True)`` on the unscaled STFT (Gauss model: scale-free)."""
    from pyroomacoustics.bss import auxiva

    _, _, X = pair_far
    Y = auxiva(np.moveaxis(X[0, :2], 0, -1).astype(np.complex128), n_iter=30, model="gauss",
               proj_back=True)
    for p in (1.0, 2.0):
        ref = np.abs(Y) ** p
        ref /= ref.sum(axis=-1, keepdims=True)
        post = iva_masks(X[:, :2], mask_power=p).posteriors[0]
        err = min(np.abs(post[..., list(perm)] - ref).max()
                  for perm in itertools.permutations(range(2)))
        assert err < 1e-4


def test_three_sources_on_four_microphones():
    mix, images = free_field_mixture(23, (10.0, 130.0, 250.0), n=N)
    X = stft(mix, CFG)[None]
    for C in (3, 4):
        res = iva_masks(X[:, :C], num_components=3)
        T, F = X.shape[2:]
        assert res.posteriors.shape == (1, T, F, 3) and res.posteriors.dtype == np.float32
        assert res.labels.shape == (1, T, F) and res.labels.dtype == np.uint8
        assert res.shares.shape == (1, 3) and not res.degenerate[0]
        np.testing.assert_allclose(res.posteriors.sum(axis=-1), 1.0, atol=1e-5)
        assert masked_si_sdri(res, X, mix, images) >= 10.0


def test_a_frequency_without_energy_keeps_uniform_masks(pair_far):
    """A bin with no energy on any channel makes IVA's linear solves singular: it is skipped
    (uniform masks) and the other frequencies still separate."""
    mix, images, X = pair_far
    Xz = X[:, :2].copy()
    Xz[..., 40] = 0
    res = iva_masks(Xz)
    assert not res.degenerate[0]
    assert np.all(res.posteriors[0, :, 40] == np.float32(0.5))
    assert masked_si_sdri(res, X, mix, images) >= 10.0


def test_overiva_needs_a_full_rank_covariance(pair_far):
    """OverIVA on all 8 channels: a noise-free free-field mixture of 2 talkers has a nearly
    rank-2 channel covariance and a singular solve inside pyroomacoustics (reported as
    degenerate, uniform masks); with a sensor noise floor (about 43 dB down) it separates."""
    mix, images, X = pair_far
    res = iva_masks(X, overdetermined="overiva")
    assert res.degenerate[0] and np.all(res.posteriors == np.float32(0.5))
    noisy = mix + 1e-3 * np.random.default_rng(0).standard_normal(mix.shape).astype(np.float32)
    Xn = stft(noisy, CFG)[None]
    res = iva_masks(Xn, overdetermined="overiva")
    assert not res.degenerate[0]
    assert masked_si_sdri(res, Xn, noisy, images) >= 10.0


def test_degenerate_inputs_are_uniform_without_nan(pair_far):
    _, _, X = pair_far
    X = X[0, :4]
    dead = X.copy()
    dead[2] = 0
    inverted = X.copy()
    inverted[3] = -0.5 * X[0]
    batch = np.stack([np.zeros_like(X), X, np.repeat(X[:1], 4, axis=0), dead, inverted])
    short = np.zeros((5, X.shape[1]), bool)
    short[:, :8] = True                         # 8 valid frames: too few for IVA
    for valid, flagged in ((None, [True, False, True, True, True]), (short, [True] * 5)):
        res = iva_masks(batch, valid)
        assert res.degenerate.tolist() == flagged
        assert np.all(np.isfinite(res.posteriors)) and np.all(np.isfinite(res.shares))
        flat = res.posteriors[res.degenerate]
        assert np.all(flat == np.float32(0.5)) and np.all(res.labels[res.degenerate] == 0)
        assert np.all(res.n_iter[res.degenerate] == 0)
    assert res.fit_bins[0] == 0 and res.fit_bins[1] > 0


def test_result_does_not_depend_on_the_batch_and_is_deterministic():
    specs = [stft(free_field_mixture(s, az, n=n)[0], CFG)[:2] for s, az, n in
             [(31, (30.0, 90.0), int(2.2 * FS)), (32, (200.0, 330.0), 3 * FS)]]
    T = max(s.shape[1] for s in specs)
    X = np.zeros((2, 2, T, specs[0].shape[-1]), np.complex64)
    valid = np.zeros((2, T), bool)
    for b, s in enumerate(specs):
        X[b, :, : s.shape[1]] = s
        valid[b, : s.shape[1]] = True
    batch = iva_masks(X, valid)
    assert not batch.degenerate.any()
    for b, s in enumerate(specs):
        alone = iva_masks(s[None])
        t = s.shape[1]
        assert np.array_equal(batch.posteriors[b, :t], alone.posteriors[0])
        assert np.array_equal(batch.fit_mask[b, :t], alone.fit_mask[0])
        assert np.array_equal(batch.shares[b], alone.shares[0])
        # padding frames: exactly uniform, label 0, not fitted
        assert np.all(batch.posteriors[b, t:] == np.float32(0.5))
        assert np.all(batch.labels[b, t:] == 0) and not batch.fit_mask[b, t:].any()
    again = iva_masks(X, valid)
    for name in ("posteriors", "labels", "shares", "degenerate", "fit_mask", "n_iter"):
        assert np.array_equal(getattr(again, name), getattr(batch, name)), name


@pytest.mark.parametrize("kwargs,problem", [
    (dict(X=np.zeros((1, 1, 4, 129), np.complex64)), "C >= 2"),
    (dict(X=np.zeros((1, 2, 4, 129), np.complex64), num_components=3), "num_components"),
    (dict(X=np.zeros((1, 2, 4, 129), np.complex64), num_components=1), "num_components"),
    (dict(X=np.zeros((1, 2, 4, 129), np.complex64), valid=np.ones((1, 5), bool)), "valid"),
    (dict(X=np.zeros((1, 2, 4, 129), np.complex64), model="cauchy"), "model"),
    (dict(X=np.zeros((1, 2, 4, 129), np.complex64), overdetermined="pick"), "overdetermined"),
])
def test_bad_input_is_a_one_line_error(kwargs, problem):
    X = kwargs.pop("X")
    with pytest.raises(BootsepError, match=problem):
        iva_masks(X, **kwargs)
