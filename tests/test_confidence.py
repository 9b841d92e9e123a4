"""Confidence measures (paper eqs. 4-7) against hand cases and a brute-force JSD integral."""

import numpy as np
import pytest

from bootsep.errors import BootsepError
from bootsep.pipeline.confidence import c_cl, c_jsd, c_post, combined_confidence, mean_confidence
from bootsep.pipeline.gmm import GMMParams, fit_gmm

# ---------------------------------------------------------------------------------- eq. 4

def test_c_cl_hand_cases_k2():
    labels = np.array([[0, 1, 0, 1], [1, 1, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1], [0, 1, 0, 1]])
    mask = np.ones_like(labels, bool)
    mask[4] = False                                      # nothing fitted
    got = c_cl(labels, mask, 2)
    # paper: sum_j (1/2 - |1/2 - f_j|): equal -> 1, one cluster -> 0, 3:1 -> 1/2
    np.testing.assert_allclose(got, [1.0, 0.0, 0.5, 0.5, 0.0])
    # only masked bins count
    assert c_cl(np.array([[0, 0, 1, 1]]), np.array([[True, False, True, False]]), 2)[0] == 1.0
    assert c_cl(np.array([[0, 0, 1, 1]]), np.array([[True, True, True, False]]), 2)[0] == \
        pytest.approx(1 - abs(2 / 3 - 0.5) - abs(1 / 3 - 0.5))


def test_c_cl_k3_generalisation_and_errors():
    labels = np.array([[0, 1, 2] * 4, [2] * 12, [0] * 6 + [1] * 6])
    got = c_cl(labels, np.ones_like(labels, bool), 3)
    # 1 - K/(2(K-1)) sum_j |f_j - 1/K|: equal split 1, one cluster 0, two of three clusters
    np.testing.assert_allclose(got, [1.0, 0.0, 1 - 0.75 * (1 / 6 + 1 / 6 + 1 / 3)])
    assert ((got >= 0) & (got <= 1)).all()
    with pytest.raises(BootsepError):
        c_cl(np.array([[0, 3]]), np.ones((1, 2), bool), 3)
    with pytest.raises(BootsepError):
        c_cl(np.zeros((2, 3), int), np.ones((2, 4), bool), 2)
    # labels outside the fitted bins are never looked at
    assert c_cl(np.array([[0, 1, 9]]), np.array([[True, True, False]]), 2)[0] == 1.0


# ---------------------------------------------------------------------------------- eq. 5

def _gauss(x, m, v):
    return np.exp(-0.5 * (x - m) ** 2 / v) / np.sqrt(2 * np.pi * v)


def _jsd_grid(w, m, v, mp, vp):
    """Brute-force JSD (bits) on a fine 1-D grid, and the Monte Carlo standard error for n = 1."""
    lo = min(m.min() - 12 * np.sqrt(v.max()), mp - 12 * np.sqrt(vp))
    hi = max(m.max() + 12 * np.sqrt(v.max()), mp + 12 * np.sqrt(vp))
    x = np.linspace(lo, hi, 400001)
    dx = x[1] - x[0]
    q = sum(wk * _gauss(x, mk, vk) for wk, mk, vk in zip(w, m, v))
    p = _gauss(x, mp, vp)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(p > 0, np.log2(2 * p / (p + q)), 0.0)
        g = np.where(q > 0, np.log2(2 * q / (p + q)), 0.0)
    ef, eg = (p * f).sum() * dx, (q * g).sum() * dx
    var_f = (p * f * f).sum() * dx - ef ** 2
    var_g = (q * g * g).sum() * dx - eg ** 2
    return 0.5 * (ef + eg), 0.5 * np.sqrt(var_f + var_g)


def _params(w, m, v):
    w, m, v = (np.asarray(a, float) for a in (w, m, v))
    return GMMParams(weights=w, means=m[..., None], covariances=v[..., None, None])


def _moment_matched(w, m, v):
    mp = (w * m).sum(-1)
    vp = (w * (v + (m - mp[..., None]) ** 2)).sum(-1)
    return mp, vp


def test_c_jsd_matches_a_brute_force_integral_within_monte_carlo_error():
    w = np.array([[0.3, 0.7], [0.5, 0.5], [0.9, 0.1], [0.5, 0.5]])
    m = np.array([[-1.0, 1.5], [-0.2, 0.2], [0.0, 3.0], [-4.0, 4.0]])
    v = np.array([[0.2, 0.5], [0.3, 0.3], [1.0, 0.05], [0.1, 0.1]])
    mp, vp = _moment_matched(w, m, v)
    n = 20000
    got = c_jsd(_params(w, m, v), _params(np.ones((4, 1)), mp[:, None], vp[:, None]), n, seed=5)
    for b in range(4):
        exact, sd = _jsd_grid(w[b], m[b], v[b], mp[b], vp[b])
        assert abs(got[b] - exact) < 4 * sd / np.sqrt(n) + 1e-4, (b, got[b], exact)
    assert ((got >= 0) & (got <= 1)).all()


def test_c_jsd_one_cluster_is_near_zero_and_far_clusters_near_one():
    rng = np.random.default_rng(0)
    one = rng.normal(0.3, 0.5, (1, 5000, 1))
    # two clusters 2000 standard deviations apart (the JSD of a Gaussian and a GMM tends to 1
    # only as the clusters' spread shrinks relative to their distance: 0.85 at 100, 0.99 here)
    far = np.concatenate([rng.normal(-1, 1e-3, 2500), rng.normal(1, 1e-3, 2500)])[None, :, None]
    x = np.concatenate([one, far])
    gk, g1 = fit_gmm(x, None, 2), fit_gmm(x, None, 1)
    got = c_jsd(gk.params, g1.params, 4000, seed=1)
    assert got[0] < 0.02
    assert got[1] > 0.95


def test_c_jsd_seeding_batch_independence_and_degenerate():
    w = np.array([[0.3, 0.7], [0.5, 0.5], [0.6, 0.4]])
    m = np.array([[-1.0, 1.5], [-2.0, 2.0], [0.0, 0.5]])
    v = np.array([[0.2, 0.5], [0.3, 0.3], [0.4, 0.1]])
    mp, vp = _moment_matched(w, m, v)
    Q, P = _params(w, m, v), _params(np.ones((3, 1)), mp[:, None], vp[:, None])
    state = np.random.get_state()
    a = c_jsd(Q, P, 500, seed=3)
    assert np.random.get_state()[1].tolist() == state[1].tolist()      # no global RNG
    np.testing.assert_array_equal(a, c_jsd(Q, P, 500, seed=3))
    assert not np.array_equal(a, c_jsd(Q, P, 500, seed=4))

    def row(p, b):
        return GMMParams(p.weights[b:b + 1], p.means[b:b + 1], p.covariances[b:b + 1])

    for b in range(3):                                                  # batch-independent
        assert c_jsd(row(Q, b), row(P, b), 500, seed=3)[0] == pytest.approx(a[b], abs=1e-12)
    seeds = [[2, 11], [2, 12], 99]
    per = c_jsd(Q, P, 500, seeds=seeds)
    for b in range(3):
        alone = c_jsd(row(Q, b), row(P, b), 500, seed=seeds[b])[0]
        assert alone == pytest.approx(per[b], abs=1e-12)
    deg = c_jsd(Q, P, 500, seed=3, degenerate=np.array([False, True, False]))
    assert deg[1] == 0.0 and deg[0] == a[0]
    # identical distributions, non-finite or zero-variance parameters: 0, never NaN
    same = c_jsd(_params([[0.5, 0.5]], [[1.0, 1.0]], [[2.0, 2.0]]),
                 _params([[1.0]], [[1.0]], [[2.0]]), 500)
    assert same[0] == pytest.approx(0.0, abs=1e-12)
    bad = c_jsd(_params([[0.5, 0.5], [0.5, 0.5]], [[np.nan, 1.0], [0.0, 1.0]],
                        [[1.0, 1.0], [0.0, 1.0]]),
                _params([[1.0], [1.0]], [[0.0], [0.0]], [[1.0], [1.0]]), 100)
    np.testing.assert_array_equal(bad, [0.0, 0.0])


def test_c_jsd_general_dimension_path():
    # 2-D GMMs whose second coordinate is an independent N(0, 1) in both: JSD as in 1-D
    w, m, v = np.array([[0.4, 0.6]]), np.array([[-1.0, 1.0]]), np.array([[0.3, 0.2]])
    mp, vp = _moment_matched(w, m, v)
    eye = np.zeros((1, 2, 2, 2))
    eye[..., 0, 0], eye[..., 1, 1] = v, 1.0
    Q2 = GMMParams(w, np.stack([m, np.zeros_like(m)], -1), eye)
    P2 = GMMParams(np.ones((1, 1)), np.array([[[mp[0], 0.0]]]),
                   np.array([[[[vp[0], 0.0], [0.0, 1.0]]]]))
    n = 20000
    exact, sd = _jsd_grid(w[0], m[0], v[0], mp[0], vp[0])
    assert abs(c_jsd(Q2, P2, n, seed=0)[0] - exact) < 4 * sd / np.sqrt(n) + 1e-4


# ---------------------------------------------------------------------------------- eq. 6

def test_c_post_values_and_range():
    g = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.75, 0.25], [0.2, 0.8]], np.float32)
    got = c_post(g)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [0.0, 1.0, 1.0, 0.5, 0.6], atol=1e-6)
    np.testing.assert_allclose(got, 2 * np.abs(g.max(-1) - 0.5), atol=1e-6)   # the paper's eq. 6
    g3 = np.array([[1 / 3, 1 / 3, 1 / 3], [0, 1, 0], [0.5, 0.5, 0]])
    np.testing.assert_allclose(c_post(g3), [0.0, 1.0, 0.25], atol=1e-12)
    rng = np.random.default_rng(0)
    for K in (2, 3, 5):
        r = c_post(rng.dirichlet(np.ones(K), size=(4, 50)))
        assert r.shape == (4, 50) and ((r >= 0) & (r <= 1)).all()


# ---------------------------------------------------------------------------------- eq. 7

def test_combined_confidence_broadcasting_alpha_and_dtype():
    rng = np.random.default_rng(1)
    cp = rng.random((3, 4, 5)).astype(np.float32)
    cp[0, 0, 0] = 0.0
    cl = np.array([1.0, 0.5, 0.0])
    jsd = np.array([0.8, 0.4, 0.9])
    for alpha in (0.5, 1.0, 2.0):
        got = combined_confidence(cl, jsd, cp, alpha)
        assert got.dtype == np.float32 and got.shape == cp.shape
        np.testing.assert_allclose(got, (cl[:, None, None] * jsd[:, None, None] * cp) ** alpha,
                                   rtol=1e-5)
        assert ((got >= 0) & (got <= 1)).all()
    ones = combined_confidence(cl, jsd, cp, 0.0)                 # alpha = 0: all ones, even at 0
    assert ones.dtype == np.float32 and (ones == 1).all()
    # as train/weights.py calls it: float32 scalars and one (T, F) utterance
    one = combined_confidence(np.float32(0.5), np.float32(0.5), cp[1], 1.0)
    assert one.dtype == np.float32 and one.shape == (4, 5)
    np.testing.assert_allclose(one, 0.25 * cp[1], rtol=1e-6)
    assert (combined_confidence(np.float32(0), np.float32(0.5), cp[1], 0) == 1).all()
    with pytest.raises(BootsepError):
        combined_confidence(cl, jsd, cp, -1.0)


def test_mean_confidence_by_hand():
    cp = np.array([[[1.0, 0.0], [0.5, 0.5], [9.0, 9.0]],
                   [[0.2, 0.4], [0.6, 0.8], [0.0, 0.0]]], np.float32)
    frames = np.array([[True, True, False], [False, False, False]])
    got = mean_confidence(np.array([1.0, 1.0]), np.array([0.5, 1.0]), cp, frames)
    np.testing.assert_allclose(got, [0.5 * 0.5, 0.0])
    bins = np.zeros(cp.shape, bool)
    bins[1, 0, 1] = bins[1, 1, 0] = True
    got = mean_confidence(np.array([0.0, 0.5]), np.array([1.0, 1.0]), cp, bins)
    np.testing.assert_allclose(got, [0.0, 0.5 * 0.5], atol=1e-7)
