"""Spatial features (paper eqs. 1-2) by hand, the fit mask, and the per-mixture PCA vs
scikit-learn."""

import cmath
import math

import numpy as np
import pytest
from sklearn.decomposition import PCA

from bootsep.errors import BootsepError
from bootsep.pipeline.features import (
    fit_mask,
    ipd,
    log_magnitude_db,
    pca_fit_ragged,
    pca_transform_angle,
    relative_db,
)
from bootsep.pipeline.padding import frames_valid
from bootsep.pipeline.spatial import spatial_masks
from bootsep.pipeline.stft import StftConfig, stft


def _dft_by_hand(frame):
    """Real-input DFT bins 0..W/2 of one windowed frame, with Python loops."""
    W = len(frame)
    return [sum(frame[n] * cmath.exp(-2j * math.pi * k * n / W) for n in range(W))
            for k in range(W // 2 + 1)]


def test_ipd_and_log_magnitude_by_hand_on_a_tiny_stft():
    cfg = StftConfig(sample_rate=8000, win_length=8, hop_length=4)
    t = np.arange(24)
    left = np.cos(2 * np.pi * t / 8 + 0.3) + 0.1 * t / 24
    right = np.roll(left, 1) * 0.5 + 0.2 * np.sin(2 * np.pi * t / 4)
    X = stft(np.stack([left, right]).astype(np.float32), cfg)          # (2, T, F)
    theta = ipd(X[0], X[1])
    logmag = log_magnitude_db(X[0])

    front = cfg.win_length - cfg.hop_length
    win = cfg.analysis_window().astype(np.float64)
    total = (X.shape[1] - 1) * cfg.hop_length + cfg.win_length
    pads = [np.concatenate([np.zeros(front), np.asarray(s, np.float32).astype(np.float64),
                            np.zeros(total - front - len(s))]) for s in (left, right)]
    for ti in range(X.shape[1]):
        seg = slice(ti * cfg.hop_length, ti * cfg.hop_length + cfg.win_length)
        d0 = _dft_by_hand(pads[0][seg] * win)
        d1 = _dft_by_hand(pads[1][seg] * win)
        for f in range(cfg.num_freq):
            z = d0[f] * d1[f].conjugate()                                # eq. (1)
            if abs(z) > 1e-4:
                want = math.atan2(z.imag, z.real)
                got = float(theta[ti, f])
                # compare on the circle (pi and -pi are the same angle)
                assert abs(cmath.exp(1j * got) - cmath.exp(1j * want)) < 1e-4, (ti, f)
            if abs(d0[f]) > 1e-4:
                want_db = 20 * math.log10(abs(d0[f]))                       # eq. (2)
                assert logmag[ti, f] == pytest.approx(want_db, abs=1e-3)
    assert theta.dtype == np.float32 and logmag.dtype == np.float32


def test_ipd_hand_values_and_zero_channels():
    x0 = np.array([1 + 1j, -2 + 0j, 0j, 3j, 1 + 0j], np.complex64)
    x1 = np.array([1 + 0j, 1j, 1 + 1j, -3j, 0j], np.complex64)
    theta = ipd(x0, x1)
    np.testing.assert_allclose(theta[:3], [np.pi / 4, np.pi / 2, 0.0], atol=1e-6)
    assert abs(theta[3]) == pytest.approx(np.pi, abs=1e-6)              # 3j * conj(-3j) = -9
    assert theta[4] == 0.0                                               # silent channel 1
    out = np.full(5, np.nan, np.float32)
    assert ipd(x0, x1, out=out) is out and out.tobytes() == theta.tobytes()


_SIGNED_ZEROS = [complex(a, b) for a in (0.0, -0.0) for b in (0.0, -0.0)]
# the other channel: one value per quadrant, on each half-axis, tiny and huge, and signed zeros
_OTHER = ([complex(a, b) for a in (2.0, -2.0) for b in (3.0, -3.0)]
          + [2.0, -2.0, 3j, -3j, complex(1e-30, -1e-30), complex(-1e30, -1e30)] + _SIGNED_ZEROS)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_ipd_against_a_zero_channel_is_zero_in_every_quadrant(dtype):
    # The convention of ipd's docstring: 0 where a channel is 0 (also both). Catches the bare
    # arctan2(z.imag, z.real) of z = x0 conj(x1): a zero channel makes z a signed zero whose
    # real part is -0.0 when the other channel is in the 3rd quadrant (x0 = 0) or the 2nd/3rd
    # (x1 = 0), and arctan2(+-0, -0) = +-pi, i.e. the opposite direction.
    zero = np.array([z for z in _SIGNED_ZEROS for _ in _OTHER], dtype)
    other = np.array(_OTHER * len(_SIGNED_ZEROS), dtype)
    assert (np.signbit(zero.real) | np.signbit(zero.imag)).any()     # signed zeros survived
    for theta in (ipd(zero, other), ipd(other, zero)):
        assert theta.dtype == (np.float32 if dtype == np.complex64 else np.float64)
        assert np.isfinite(theta).all()
        np.testing.assert_array_equal(theta, 0.0)          # -0.0 == 0.0: either sign is fine


def test_spatial_masks_ipd_against_a_zero_channel_is_zero():
    # spatial_masks computes eq. (1) inline (blockwise, in place), not through ipd(): the same
    # convention must hold there, or a silent channel's bins get phi from cos(+-pi - beta).
    vals = np.array(_OTHER, np.complex64)[None, None, :]                # (1, 1, N)
    zero = np.zeros_like(vals)
    for x0, x1 in ((vals, zero), (zero, vals)):
        res = spatial_masks(x0, x1, log_magnitude_db(x0))
        np.testing.assert_array_equal(res.ipd, 0.0)
        np.testing.assert_array_equal(res.ipd, ipd(x0, x1))


def test_log_magnitude_by_hand_and_floor():
    x = np.array([3 + 4j, 0, 1e-3, -10], np.complex64)
    np.testing.assert_allclose(log_magnitude_db(x), [20 * math.log10(5), -160.0, -60.0, 20.0],
                               atol=1e-4)
    floor = log_magnitude_db(np.zeros(3, np.complex64), eps=1e-5)
    assert floor.tolist() == pytest.approx([-100.0] * 3)


def test_relative_db_and_fit_mask_by_hand():
    logmag = np.array([[[0.0, -5.0], [-12.0, -9.0], [30.0, 30.0]],       # frame 2 is padding
                       [[-3.0, -20.0], [-np.inf, -np.inf], [1.0, 2.0]]], np.float32)
    valid = frames_valid(np.array([2, 1]), 3)
    assert valid.tolist() == [[True, True, False], [True, False, False]]
    rel = relative_db(logmag, valid)
    np.testing.assert_allclose(rel[0, :2], [[0, -5], [-12, -9]])
    np.testing.assert_allclose(rel[1, 0], [0, -17])
    assert np.isneginf(rel[0, 2]).all() and np.isneginf(rel[1, 1:]).all()
    fit = fit_mask(logmag, valid, -10.0)
    assert fit.tolist() == [[[True, True], [False, True], [False, False]],
                            [[True, False], [False, False], [False, False]]]
    assert (fit == (rel > -10)).all()
    # no valid frame, or all -inf: nothing selected and no NaN
    none = np.zeros_like(valid)
    assert not fit_mask(logmag, none, -10.0).any()
    assert np.isneginf(relative_db(logmag, none)).all()
    silent = np.full((1, 2, 2), -np.inf, np.float32)
    assert np.isneginf(relative_db(silent)).all() and not fit_mask(silent, None, -10.0).any()
    with pytest.raises(BootsepError):
        relative_db(logmag, np.ones((2, 2), bool))


def _angle_clusters(rng, B, N):
    theta = np.where(rng.random((B, N)) < 0.4, rng.normal(-1.0, 0.3, (B, N)),
                     rng.normal(0.8, 0.5, (B, N)))
    theta += rng.uniform(-2, 2, (B, 1))
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1), theta


def _assert_same_axis(ours, ref):
    """Unit axes equal up to sign (PCA axes have no intrinsic sign)."""
    assert abs(abs(float(np.dot(ours, ref))) - 1.0) < 1e-6


def _ragged(feats, mask):
    """The masked bins of ``feats (B, N, 2)`` as the ragged points and rows pca_fit_ragged takes."""
    return feats[mask], np.repeat(np.arange(mask.shape[0]), mask.sum(1))


def test_pca_matches_sklearn_per_mixture_with_masks():
    rng = np.random.default_rng(0)
    B, N = 5, 400
    feats, theta = _angle_clusters(rng, B, N)
    mask = rng.random((B, N)) < np.linspace(0.2, 1.0, B)[:, None]
    fit = pca_fit_ragged(*_ragged(feats, mask), B)
    phi = pca_transform_angle(fit, theta)                               # every bin
    for b in range(B):
        pts = feats[b][mask[b]]
        sk = PCA(n_components=1).fit(pts)
        n = len(pts)
        np.testing.assert_allclose(fit.mean[b], sk.mean_, atol=1e-12)
        _assert_same_axis(fit.component[b], sk.components_[0])
        # ours is the population variance (/n), sklearn's the sample variance (/(n-1))
        assert fit.explained_variance[b] * n / (n - 1) == pytest.approx(sk.explained_variance_[0],
                                                                       rel=1e-9)
        sign = np.sign(np.dot(fit.component[b], sk.components_[0]))
        np.testing.assert_allclose(phi[b], sign * sk.transform(feats[b])[:, 0], atol=1e-9)


def test_pca_of_angles_from_the_angle_directly():
    rng = np.random.default_rng(1)
    feats, theta = _angle_clusters(rng, 3, 500)
    fit = pca_fit_ragged(*_ragged(feats, np.ones((3, 500), bool)), 3)
    projected = np.einsum("bnd,bd->bn", feats - fit.mean[:, None, :], fit.component)
    via_angle = pca_transform_angle(fit, theta.astype(np.float32))
    assert via_angle.dtype == np.float32
    np.testing.assert_allclose(via_angle, projected, atol=2e-6)
    out = np.empty((3, 500), np.float32)
    assert pca_transform_angle(fit, theta.astype(np.float32), out=out) is out
    np.testing.assert_array_equal(out, via_angle)
    np.testing.assert_allclose(pca_transform_angle(fit, theta), projected, atol=1e-12)


def test_pca_sign_convention():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(2, 300, 2)) * [1.0, 0.2]
    feats[1] = -feats[1][:, ::-1]                           # the other eigenvector branch
    fit = pca_fit_ragged(*_ragged(feats, np.ones((2, 300), bool)), 2)
    big = np.take_along_axis(fit.component, np.abs(fit.component).argmax(-1)[:, None], -1)
    assert (big > 0).all()                                  # largest coordinate positive (svd_flip)


def test_pca_degenerate_inputs():
    feats = np.array([[[0.5, 0.2], [0.5, 0.2], [np.nan, np.inf]],
                      [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
                      [[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]])
    mask = np.array([[True, True, False], [False, False, False], [True, False, False]])
    fit = pca_fit_ragged(*_ragged(feats, mask), 3)
    np.testing.assert_allclose(fit.mean, [[0.5, 0.2], [0, 0], [1.0, 0.0]])
    np.testing.assert_allclose(fit.component, [[1, 0], [1, 0], [1, 0]])
    np.testing.assert_allclose(fit.explained_variance, [0, 0, 0])
    empty = pca_fit_ragged(np.zeros((0, 2)), np.zeros(0, int), 2)       # no point at all
    assert empty.mean.dtype == np.float64 and (empty.mean == 0).all()
    np.testing.assert_allclose(empty.component, [[1, 0], [1, 0]])
    # an isotropic cloud has no preferred axis: (1, 0)
    iso = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    np.testing.assert_allclose(pca_fit_ragged(iso, np.zeros(4, int), 1).component, [[1, 0]])
    with pytest.raises(BootsepError):
        pca_fit_ragged(np.zeros((2, 3)), np.zeros(2, int), 1)
