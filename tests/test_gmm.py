"""Batched EM against scikit-learn's GaussianMixture(covariance_type='full'), recovery,
degenerate inputs and sampling (the Monte Carlo draws of C_JSD, eq. 5).

Stated tolerances (same data, same initial parameters, same tol/max_iter/reg_covar):
float64 data agree with scikit-learn to 1e-9 (weights, means, variances, posteriors, lower
bound) with the same number of iterations; float32 data (the pipeline's φ) to 1e-5.
"""

import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.mixture import GaussianMixture

from bootsep.errors import BootsepError
from bootsep.pipeline.gmm import (
    GMMParams,
    fit_gmm,
    log_likelihood,
    posteriors,
    sample_from_variates,
)


def _row(params, b):
    return GMMParams(params.weights[b:b + 1], params.means[b:b + 1], params.covariances[b:b + 1])


def _sklearn_from(init, b, x, **kw):
    return GaussianMixture(
        n_components=init.n_components, covariance_type="full", weights_init=init.weights[b],
        means_init=init.means[b], precisions_init=np.linalg.inv(init.covariances[b]),
        **kw).fit(x)


def _data_1d(rng, B, N):
    x = np.empty((B, N, 1))
    for b in range(B):
        pick = rng.random(N) < 0.3 + 0.1 * b
        x[b, :, 0] = np.where(pick, rng.normal(-1 + 0.2 * b, 0.3, N),
                              rng.normal(1, 0.5 + 0.1 * b, N))
    mask = np.ones((B, N), bool)
    for b in range(B):
        mask[b, N - 300 * b:] = False                  # different counts per mixture
    mask[:, ::7] = False
    x[~mask] = np.nan                                   # masked-out points are never read
    return x, mask


@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-9), (np.float32, 1e-5)])
def test_fast_path_d1_k2_matches_sklearn(dtype, atol):
    rng = np.random.default_rng(0)
    B, N = 4, 2000
    x, mask = _data_1d(rng, B, N)
    init = GMMParams(weights=np.tile([0.5, 0.5], (B, 1)),
                     means=np.tile([[-0.5], [0.5]], (B, 1, 1)),
                     covariances=np.tile(np.ones((2, 1, 1)), (B, 1, 1, 1)))
    fit = fit_gmm(x.astype(dtype), mask, 2, init=init, tol=1e-3, max_iter=200, reg_covar=1e-6)
    assert fit.params.weights.shape == (B, 2) and fit.params.covariances.shape == (B, 2, 1, 1)
    for b in range(B):
        xb = x[b][mask[b]].astype(dtype)
        sk = _sklearn_from(init, b, xb, tol=1e-3, max_iter=200, reg_covar=1e-6)
        np.testing.assert_allclose(fit.params.weights[b], sk.weights_, atol=atol)
        np.testing.assert_allclose(fit.params.means[b], sk.means_, atol=atol)
        np.testing.assert_allclose(fit.params.covariances[b], sk.covariances_, atol=atol)
        assert fit.lower_bound[b] == pytest.approx(sk.lower_bound_, abs=atol)
        assert fit.n_iter[b] == sk.n_iter_ and fit.converged[b] == sk.converged_
        post = posteriors(_row(fit.params, b), xb[None])[0]
        assert post.dtype == dtype
        np.testing.assert_allclose(post, sk.predict_proba(xb), atol=10 * atol)
        assert fit.n_points[b] == mask[b].sum()


def test_general_path_d2_k3_matches_sklearn_batched_with_masks():
    rng = np.random.default_rng(1)
    B, N, K = 3, 900, 3
    centers = np.array([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]])
    x = np.empty((B, N, 2))
    for b in range(B):
        lab = rng.integers(0, K, N)
        x[b] = centers[lab] + rng.normal(size=(N, 2)) @ np.array([[0.6, 0.2], [0.0, 0.4 + 0.1 * b]])
    mask = rng.random((B, N)) < np.array([[1.0], [0.7], [0.4]])
    init = GMMParams(weights=np.full((B, K), 1 / K),
                     means=np.tile([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], (B, 1, 1)),
                     covariances=np.tile(np.eye(2), (B, K, 1, 1)))
    fit = fit_gmm(x, mask, K, init=init, tol=1e-6, max_iter=500)
    for b in range(B):
        xb = x[b][mask[b]]
        sk = _sklearn_from(init, b, xb, tol=1e-6, max_iter=500, reg_covar=1e-6)
        np.testing.assert_allclose(fit.params.weights[b], sk.weights_, atol=1e-9)
        np.testing.assert_allclose(fit.params.means[b], sk.means_, atol=1e-9)
        np.testing.assert_allclose(fit.params.covariances[b], sk.covariances_, atol=1e-9)
        assert fit.lower_bound[b] == pytest.approx(sk.lower_bound_, abs=1e-9)
        assert fit.n_iter[b] == sk.n_iter_
        np.testing.assert_allclose(posteriors(_row(fit.params, b), xb[None])[0],
                                   sk.predict_proba(xb), atol=1e-9)
        np.testing.assert_allclose(log_likelihood(_row(fit.params, b), xb[None])[0],
                                   sk.score_samples(xb), atol=1e-9)


def _quantile_start(points, K, reg):
    """fit_gmm's documented 'quantile' start, written out for one mixture of 1-D points: sort
    them, cut into K slices [k n // K, (k + 1) n // K); each slice's share, mean and
    population variance + reg."""
    xs = np.sort(np.asarray(points, np.float64).ravel())
    cuts = [k * xs.size // K for k in range(K + 1)]
    parts = [xs[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    return (np.array([p.size / xs.size for p in parts]), np.array([[p.mean()] for p in parts]),
            np.array([[[p.var() + reg]] for p in parts]))


@pytest.mark.parametrize("max_iter", [2, 200])
@pytest.mark.parametrize("K, dtype, atol", [(2, np.float64, 1e-9), (2, np.float32, 1e-5),
                                            (3, np.float64, 1e-9)])
def test_quantile_init_is_sklearn_started_from_the_documented_parameters(K, dtype, atol,
                                                                         max_iter):
    # The start spatial_masks uses (init="quantile"; K = 2 takes the D = 1 fast path, K = 3
    # the general one) against sklearn started from weights_init/means_init/precisions_init
    # computed above. max_iter = 2 keeps the result close to the start, so a different start
    # (slices of the unsorted points, of the padded row, uneven cuts, variance without
    # reg_covar or with the sample /(n - 1), equal instead of slice-share weights) fails even
    # where EM would later reach the same optimum; max_iter = 200 checks the converged fit.
    rng = np.random.default_rng(8)
    B, N, reg = 3, 1500, 1e-6
    x, mask = _data_1d(rng, B, N)
    x = x.astype(dtype)
    fit = fit_gmm(x, mask, K, init="quantile", tol=1e-4, max_iter=max_iter, reg_covar=reg)
    for b in range(B):
        xb = x[b][mask[b]]
        w0, m0, c0 = _quantile_start(xb, K, reg)
        sk = GaussianMixture(K, covariance_type="full", weights_init=w0, means_init=m0,
                             precisions_init=1.0 / c0, tol=1e-4, max_iter=max_iter,
                             reg_covar=reg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # max_iter = 2: "did not converge"
            sk.fit(xb)
        np.testing.assert_allclose(fit.params.weights[b], sk.weights_, atol=atol)
        np.testing.assert_allclose(fit.params.means[b], sk.means_, atol=atol)
        np.testing.assert_allclose(fit.params.covariances[b], sk.covariances_, atol=atol)
        assert fit.n_iter[b] == sk.n_iter_ and fit.converged[b] == sk.converged_
        np.testing.assert_allclose(posteriors(_row(fit.params, b), xb[None])[0],
                                   sk.predict_proba(xb), atol=10 * atol)


def test_one_component_is_the_gaussian_fit():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 500, 2)) @ np.array([[1.0, 0.5], [0.0, 0.3]]) + 1.0
    mask = np.ones((2, 500), bool)
    mask[1, 200:] = False
    fit = fit_gmm(x, mask, 1)
    for b in range(2):
        sk = GaussianMixture(1, covariance_type="full").fit(x[b][mask[b]])
        np.testing.assert_allclose(fit.params.means[b], sk.means_, atol=1e-10)
        np.testing.assert_allclose(fit.params.covariances[b], sk.covariances_, atol=1e-10)
        assert fit.lower_bound[b] == pytest.approx(sk.score(x[b][mask[b]]), abs=1e-10)
    np.testing.assert_allclose(fit.params.weights, 1.0)


def test_fast_posteriors_equal_log_sum_exp_posteriors():
    rng = np.random.default_rng(3)
    params = GMMParams(weights=np.array([[0.3, 0.7], [0.9, 0.1]]),
                       means=np.array([[[-1.0], [2.0]], [[0.0], [0.1]]]),
                       covariances=np.array([[[[0.2]], [[1.5]]], [[[1e-4]], [[3.0]]]]))
    x = np.concatenate([rng.uniform(-30, 30, (2, 500, 1)), rng.normal(0, 1, (2, 500, 1))], axis=1)
    sd = np.sqrt(params.covariances[..., 0, 0])
    lp = norm.logpdf(x, params.means[:, None, :, 0], sd[:, None, :])          # oracle: scipy
    lp += np.log(params.weights)[:, None, :]
    ref = np.exp(lp - np.logaddexp(lp[..., :1], lp[..., 1:]))
    got = posteriors(params, x)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-12)
    labels = np.empty((2, 1000), np.uint8)
    posteriors(params, x.astype(np.float32), labels_out=labels)
    assert (labels == posteriors(params, x.astype(np.float32)).argmax(-1)).all()


def _sorted(params):
    order = np.argsort(params.means[..., 0], axis=-1)
    return params.permute(order)


def test_recovers_known_mixtures_up_to_permutation():
    rng = np.random.default_rng(4)
    B, N = 6, 6000
    true_m = np.stack([rng.uniform(-1.5, -0.5, B), rng.uniform(0.5, 1.5, B)], 1)
    true_s = rng.uniform(0.1, 0.3, (B, 2))
    true_w = np.tile([0.35, 0.65], (B, 1))
    swap = rng.random(B) < 0.5                       # component order in the data is arbitrary
    for a in (true_m, true_s, true_w):
        a[swap] = a[swap][:, ::-1]
    comp = (rng.random((B, N)) < true_w[:, 1:]).astype(int)
    x = (np.take_along_axis(true_m, comp, 1) + np.take_along_axis(true_s, comp, 1)
         * rng.normal(size=(B, N)))[..., None].astype(np.float32)
    fit = fit_gmm(x, None, 2, tol=1e-6, max_iter=300)
    p = _sorted(fit.params)                          # resolve the permutation by the means
    order = np.argsort(true_m, axis=1)
    assert fit.converged.all() and not fit.degenerate.any()
    np.testing.assert_allclose(p.means[..., 0], np.take_along_axis(true_m, order, 1), atol=0.03)
    np.testing.assert_allclose(np.sqrt(p.covariances[..., 0, 0]),
                               np.take_along_axis(true_s, order, 1), atol=0.02)
    np.testing.assert_allclose(p.weights, np.take_along_axis(true_w, order, 1), atol=0.03)

    # D = 2, K = 3 (the general EM path) from the quantile start
    centers = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    lab = rng.integers(0, 3, (2, 3000))
    x2 = centers[lab] + 0.5 * rng.normal(size=(2, 3000, 2))
    fit2 = fit_gmm(x2, None, 3, tol=1e-6)
    for b in range(2):
        got = fit2.params.means[b]
        order = [int(np.argmin(((got - c) ** 2).sum(-1))) for c in centers]
        assert sorted(order) == [0, 1, 2]
        np.testing.assert_allclose(got[order], centers, atol=0.05)
        np.testing.assert_allclose(fit2.params.weights[b][order], 1 / 3, atol=0.03)


@pytest.mark.parametrize("K, D", [(2, 1), (3, 1), (2, 2), (1, 1)])
def test_degenerate_inputs_are_defined(K, D):
    B, N = 5, 6
    x = np.full((B, N, D), np.nan)
    mask = np.zeros((B, N), bool)
    x[1, 0], mask[1, 0] = 0.7, True                       # one point
    x[2, :4], mask[2, :4] = 2.5, True                     # identical points
    x[3, :] = 1e3                                         # all masked out (but finite)
    x[4, :], mask[4] = np.arange(N)[:, None], True        # a normal mixture
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_gmm(x.astype(np.float32), mask, K)
        post = posteriors(fit.params, np.nan_to_num(x, nan=0.0).astype(np.float32))
    assert fit.degenerate.tolist() == [True, True, True, True, False]
    assert fit.n_points.tolist() == [0, 1, 4, 0, N]
    for a in (fit.params.weights, fit.params.means, fit.params.covariances, fit.lower_bound, post):
        assert np.isfinite(a).all()
    np.testing.assert_allclose(post[:4], 1.0 / K, atol=1e-7)
    np.testing.assert_allclose(fit.params.means[2], 2.5)
    assert fit.converged[:4].all() and (fit.n_iter[:4] == 0).all()
    np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-6)


def test_reg_covar_zero_and_collapsing_component_stay_finite():
    x = np.concatenate([np.zeros(50), np.linspace(1, 2, 50)])[None, :, None]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dt in (np.float32, np.float64):
            fit = fit_gmm(x.astype(dt), None, 2, reg_covar=0.0, max_iter=50)
            assert np.isfinite(fit.params.covariances).all() and (fit.params.covariances > 0).all()
            assert np.isfinite(posteriors(fit.params, x.astype(dt))).all()


def test_bad_inputs_raise():
    with pytest.raises(BootsepError):
        fit_gmm(np.zeros((3, 2)))
    with pytest.raises(BootsepError):
        fit_gmm(np.zeros((1, 3, 1)), np.ones((1, 2), bool))
    with pytest.raises(BootsepError):
        fit_gmm(np.array([[[np.nan], [1.0]]]))
    with pytest.raises(BootsepError):
        fit_gmm(np.zeros((1, 3, 1)), init="nope")
    with pytest.raises(BootsepError):
        fit_gmm(np.zeros((1, 3, 1)), init="kmeans++")           # not offered: nothing runs it


def test_sampling_moments_and_batch_independence():
    params = GMMParams(weights=np.array([[0.25, 0.75], [0.5, 0.5]]),
                       means=np.array([[[-2.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [5.0, 5.0]]]),
                       covariances=np.tile(np.array([[1.0, 0.3], [0.3, 0.5]]), (2, 2, 1, 1)))
    rng = np.random.default_rng(0)
    u, z = rng.random((2, 40000)), rng.standard_normal((2, 40000, 2))
    s = sample_from_variates(params, u, z)
    assert s.shape == (2, 40000, 2)
    mean = (params.weights[..., None] * params.means).sum(1)
    np.testing.assert_allclose(s.mean(1), mean, atol=0.05)
    inside = (params.weights[..., None, None] * (params.covariances + params.means[..., None]
                                                 * params.means[..., None, :])).sum(1)
    cov = inside - mean[:, :, None] * mean[:, None, :]           # law of total covariance
    np.testing.assert_allclose([np.cov(s[b].T) for b in range(2)], cov, atol=0.1)
    # variates shared by the batch: a mixture's draws depend only on its own parameters
    u, z = rng.random(1000), rng.standard_normal((1000, 2))
    alone = sample_from_variates(_row(params, 1), u, z)[0]
    batched = sample_from_variates(params, u, z)[1]
    np.testing.assert_array_equal(alone, batched)
    # the transform of given variates: u picks the component by the cumulative weights
    u = np.array([0.1, 0.3, 0.9])
    z = np.zeros((3, 2))
    out = sample_from_variates(_row(params, 0), u, z)[0]
    np.testing.assert_allclose(out, [[-2.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
