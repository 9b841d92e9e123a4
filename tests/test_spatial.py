"""Batched spatial clustering (paper §2.1) end to end on synthetic anechoic stereo mixtures,
against per-mixture runs and scikit-learn, and on degenerate inputs."""

import warnings

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from bootsep.errors import BootsepError
from bootsep.pipeline.confidence import confidence_measures
from bootsep.pipeline.features import log_magnitude_db
from bootsep.pipeline.padding import frames_valid, pad_stack
from bootsep.pipeline.spatial import spatial_masks
from bootsep.pipeline.stft import StftConfig, istft, stft

CFG = StftConfig(sample_rate=8000)
RATE = CFG.sample_rate


def _delay(x, d):
    """Delay ``x`` by ``d`` (possibly fractional) samples: an ideal anechoic propagation."""
    n = x.size
    spec = np.fft.rfft(x, 2 * n)
    return np.fft.irfft(spec * np.exp(-2j * np.pi * np.fft.rfftfreq(2 * n) * d), 2 * n)[:n]


def _gated_noise(rng, n, phase):
    """White noise switched on 60 % of each 250 ms period: the two sources of a mixture use
    opposite phases, so they overlap in time only partly (as speech does)."""
    t = np.arange(n) / RATE
    return rng.standard_normal(n) * (((4 * t + phase) % 1.0) < 0.6)


def _mixtures(specs, seed=0):
    """``specs``: (delay of source 1, delay of source 2, seconds) per mixture; channel 0 gets
    both sources undelayed, channel 1 each delayed by its own inter-mic delay."""
    rng = np.random.default_rng(seed)
    x0s, x1s, sources, mixes = [], [], [], []
    for d1, d2, seconds in specs:
        n = int(seconds * RATE)
        s = np.stack([_gated_noise(rng, n, 0.0), _gated_noise(rng, n, 0.5)])
        stereo = np.stack([s[0] + s[1], _delay(s[0], d1) + _delay(s[1], d2)]).astype(np.float32)
        X = stft(stereo, CFG)
        x0s.append(X[0]), x1s.append(X[1]), sources.append(s), mixes.append(stereo[0])
    x0, lengths = pad_stack(x0s)
    x1, _ = pad_stack(x1s)
    logmag, _ = pad_stack([log_magnitude_db(x) for x in x0s], fill=-np.inf)
    return x0, x1, logmag, frames_valid(lengths, x0.shape[1]), lengths, sources, mixes


def _si_sdr(est, ref):
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    target = (est @ ref) / (ref @ ref) * ref
    return 10 * np.log10((target @ target) / ((est - target) @ (est - target)))


SPECS = [(0.2, 1.2, 2.0),      # two sources at different azimuths
         (1.2, 1.2, 1.5),      # both at one azimuth (shorter: padded in the batch)
         (0.2, 0.2, 2.0)]      # both at another azimuth


@pytest.fixture(scope="module")
def run():
    x0, x1, logmag, valid, lengths, sources, mixes = _mixtures(SPECS)
    res = spatial_masks(x0, x1, logmag, valid, tau_db=-10.0, num_components=2, max_iter=100,
                        tol=1e-4, reg_covar=1e-6)
    conf = confidence_measures(res, valid, 2000, seed=0)
    return x0, x1, logmag, valid, lengths, sources, mixes, res, conf


def test_mask_separates_distinct_azimuths_and_same_azimuth_is_less_confident(run):
    x0, _, _, _, lengths, sources, mixes, res, conf = run
    T, n = int(lengths[0]), mixes[0].size
    gains = []
    for j in range(2):
        best = max(_si_sdr(istft(res.posteriors[0, :T, :, k] * x0[0, :T], CFG, n), sources[0][j])
                   for k in range(2))
        gains.append(best - _si_sdr(mixes[0], sources[0][j]))
    assert min(gains) > 2.0, gains                          # dB SI-SDR improvement, both sources
    mc = conf["mean_confidence"]
    assert mc[0] > 1.5 * mc[1] and mc[0] > 1.5 * mc[2], mc
    assert conf["c_jsd"][0] > conf["c_jsd"][1] and conf["c_jsd"][0] > conf["c_jsd"][2]


def test_result_shapes_masks_and_ranges(run):
    x0, _, logmag, valid, lengths, _, _, res, conf = run
    B, T, F = x0.shape
    assert res.posteriors.shape == (B, T, F, 2) and res.posteriors.dtype == np.float32
    assert res.ipd.dtype == res.phi.dtype == np.float32 and res.labels.dtype == np.uint8
    np.testing.assert_allclose(res.posteriors.sum(-1), 1.0, atol=1e-6)       # masks sum to 1
    assert (res.labels == res.posteriors.argmax(-1)).all()
    pad = ~valid
    assert (res.posteriors[pad] == 0.5).all() and (res.labels[pad] == 0).all()
    assert not res.fit_mask[pad].any()
    assert (res.fit_bins == res.fit_mask.sum(axis=(1, 2))).all() and (res.fit_bins > 100).all()
    rel = logmag - np.max(np.where(valid[..., None], logmag, -np.inf), axis=(1, 2), keepdims=True)
    assert (res.fit_mask == (valid[..., None] & (rel > -10.0))).all()
    assert (np.diff(res.gmm.means[..., 0], axis=-1) >= 0).all()                # sorted by mean
    np.testing.assert_allclose(res.gmm.weights.sum(-1), 1.0)
    assert res.converged.all() and not res.degenerate.any()
    assert res.gmm1.weights.shape == (B, 1)
    for key in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
        assert conf[key].shape == (B,) and ((conf[key] >= 0) & (conf[key] <= 1)).all(), key
    cp = conf["c_post"]
    assert cp.shape == (B, T, F) and ((cp >= 0) & (cp <= 1)).all()
    assert (conf["c_post"][pad] == 0).all()
    fitted = res.fit_mask
    np.testing.assert_allclose(conf["mean_c_post"],
                               [conf["c_post"][b][fitted[b]].mean() for b in range(B)], rtol=1e-5)
    over_valid = confidence_measures(res, valid, 2000, seed=0, mean_over="valid")["mean_c_post"]
    np.testing.assert_allclose(over_valid, [conf["c_post"][b][valid[b]].mean() for b in range(B)],
                               rtol=1e-5)


def test_batch_equals_single_mixture_runs(run):
    x0, x1, logmag, valid, lengths, _, _, res, conf = run
    for b, T in enumerate(lengths):
        one = spatial_masks(x0[b:b + 1, :T], x1[b:b + 1, :T], logmag[b:b + 1, :T], None)
        assert (one.fit_mask[0] == res.fit_mask[b, :T]).all()
        np.testing.assert_array_equal(one.ipd[0], res.ipd[b, :T])
        np.testing.assert_allclose(one.phi[0], res.phi[b, :T], atol=1e-6)
        np.testing.assert_allclose(one.gmm.means[0], res.gmm.means[b], atol=1e-5)
        np.testing.assert_allclose(one.gmm.covariances[0], res.gmm.covariances[b], rtol=1e-4)
        np.testing.assert_allclose(one.posteriors[0], res.posteriors[b, :T], atol=1e-4)
        c1 = confidence_measures(one, None, 2000, seed=0)
        assert c1["c_jsd"][0] == pytest.approx(conf["c_jsd"][b], abs=1e-4)


def test_pca_and_gmm_agree_with_sklearn_on_the_fit_bins(run):
    x0, x1, logmag, valid, _, _, _, _, _ = run
    res = spatial_masks(x0, x1, logmag, valid, tol=1e-9, max_iter=2000)
    for b in range(x0.shape[0]):
        theta = res.ipd[b][res.fit_mask[b]].astype(np.float64)
        feats = np.stack([np.cos(theta), np.sin(theta)], -1)
        pca = PCA(1).fit(feats)
        sign = np.sign(res.pca_component[b] @ pca.components_[0])
        assert abs(sign) == 1
        np.testing.assert_allclose(res.pca_mean[b], pca.mean_, atol=1e-6)
        np.testing.assert_allclose(res.phi[b][res.fit_mask[b]], sign * pca.transform(feats)[:, 0],
                                   atol=1e-5)
        # our EM stopped at a fixed point of scikit-learn's EM on the same bins
        phi = res.phi[b][res.fit_mask[b]][:, None].astype(np.float64)
        g = res.gmm
        sk = GaussianMixture(2, covariance_type="full", max_iter=1, weights_init=g.weights[b],
                             means_init=g.means[b], precisions_init=np.linalg.inv(g.covariances[b]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                  # "did not converge" after 1 step
            sk.fit(phi)
        np.testing.assert_allclose(sk.means_, g.means[b], atol=1e-4)
        np.testing.assert_allclose(sk.covariances_, g.covariances[b], rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(sk.weights_, g.weights[b], atol=1e-4)
        one = GaussianMixture(1, covariance_type="full").fit(phi)
        np.testing.assert_allclose(res.gmm1.means[b], one.means_, atol=1e-5)
        np.testing.assert_allclose(res.gmm1.covariances[b], one.covariances_, rtol=1e-4)


def test_gmm_is_sklearn_started_from_the_quantile_init(run):
    # spatial_masks fits its GMM with fit_gmm(init="quantile"): sort the fit bins' phi, cut
    # into K equal-count slices, start from each slice's share, mean and variance + reg_covar.
    # sklearn started from those parameters (weights_init, means_init, precisions_init) on
    # the same float32 phi, with params.yaml's max_iter/tol/reg_covar, must give the same fit
    # and posteriors (float32 data: 1e-5 as in test_gmm). Catches a pipeline that fits another
    # start (sklearn's k-means, random), other bins, or EM options than it is given.
    x0, x1, logmag, valid, _, _, _, res, _ = run            # max_iter 100, tol 1e-4, reg 1e-6
    for b in range(x0.shape[0]):
        phi = res.phi[b][res.fit_mask[b]][:, None]                       # float32
        xs = np.sort(phi[:, 0].astype(np.float64))
        parts = np.split(xs, [xs.size // 2])
        sk = GaussianMixture(
            2, covariance_type="full", max_iter=100, tol=1e-4, reg_covar=1e-6,
            weights_init=[p.size / xs.size for p in parts], means_init=[[p.mean()] for p in parts],
            precisions_init=[[[1.0 / (p.var() + 1e-6)]] for p in parts]).fit(phi)
        order = np.argsort(sk.means_[:, 0], kind="stable")               # spatial sorts by mean
        g = res.gmm
        np.testing.assert_allclose(g.weights[b], sk.weights_[order], atol=1e-5)
        np.testing.assert_allclose(g.means[b], sk.means_[order], atol=1e-5)
        np.testing.assert_allclose(g.covariances[b], sk.covariances_[order], atol=1e-5)
        assert res.n_iter[b] == sk.n_iter_ and res.converged[b] == sk.converged_
        np.testing.assert_allclose(res.posteriors[b][res.fit_mask[b]],
                                   sk.predict_proba(phi)[:, order], atol=1e-4)


def test_degenerate_inputs_give_defined_results():
    rng = np.random.default_rng(3)
    B, T, F = 5, 12, 129
    x0 = (rng.standard_normal((B, T, F)) + 1j * rng.standard_normal((B, T, F))).astype(np.complex64)
    x1 = (rng.standard_normal((B, T, F)) + 1j * rng.standard_normal((B, T, F))).astype(np.complex64)
    x0[0] = x1[0] = 0                                  # silence
    x1[1] = x0[1]                                      # a single cluster (IPD 0 everywhere)
    logmag = log_magnitude_db(x0)
    logmag[2] = -100.0
    logmag[2, 3, 7] = 0.0                              # one bin above tau
    valid = np.ones((B, T), bool)
    valid[3] = False                                   # no valid frame (zero bins)
    valid[4, 10:] = False                              # mixture 4 is ordinary, padded
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = spatial_masks(x0, x1, logmag, valid)
        conf = confidence_measures(res, valid, 500, seed=0)
        below = spatial_masks(x0, x1, logmag, valid, tau_db=1.0)        # all bins below tau
        conf_below = confidence_measures(below, valid, 500, seed=0)
    assert res.degenerate.tolist() == [True, True, True, True, False]
    assert res.fit_bins[2] == 1 and res.fit_bins[3] == 0
    assert below.degenerate.all() and (below.fit_bins == 0).all()
    for r, c in ((res, conf), (below, conf_below)):
        for name in ("ipd", "phi", "posteriors", "pca_mean", "pca_component"):
            assert np.isfinite(getattr(r, name)).all(), name
        for p in (r.gmm, r.gmm1):
            assert all(np.isfinite(a).all() for a in (p.weights, p.means, p.covariances))
        deg = r.degenerate
        assert (r.posteriors[deg] == 0.5).all() and (r.labels[deg] == 0).all()
        for key in ("c_cl", "c_jsd", "mean_c_post", "mean_confidence"):
            assert np.isfinite(c[key]).all() and (c[key][deg] == 0).all(), key
            assert ((c[key] >= 0) & (c[key] <= 1)).all()
        assert (c["c_post"][deg] == 0).all()
        np.testing.assert_allclose(r.posteriors.sum(-1), 1.0, atol=1e-6)
    assert conf["c_jsd"][4] >= 0 and res.converged.all()


def test_more_components_and_bad_inputs():
    x0, x1, logmag, valid, *_ = _mixtures([(0.0, 1.5, 1.0), (-0.5, 1.0, 0.8)], seed=1)
    res = spatial_masks(x0, x1, logmag, valid, num_components=3)
    assert res.posteriors.shape[-1] == 3 and res.gmm.means.shape == (2, 3, 1)
    np.testing.assert_allclose(res.posteriors.sum(-1), 1.0, atol=1e-5)
    assert (res.labels == res.posteriors.argmax(-1)).all() and res.labels.max() <= 2
    assert (np.diff(res.gmm.means[..., 0], axis=-1) >= 0).all()
    np.testing.assert_allclose(res.posteriors[~valid], 1 / 3, atol=1e-7)
    conf = confidence_measures(res, valid, 500, seed=0)
    assert ((conf["mean_confidence"] >= 0) & (conf["mean_confidence"] <= 1)).all()
    with pytest.raises(BootsepError):
        spatial_masks(x0, x1[:, :-1], logmag, valid)
    with pytest.raises(BootsepError):
        spatial_masks(x0, x1, logmag, valid[:, :-1])
