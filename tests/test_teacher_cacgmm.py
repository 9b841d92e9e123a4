"""The ``cacgmm`` spatial teacher (pipeline/teachers/cacgmm.py): against a plain per-frequency
reference, parameter recovery on data drawn from the model, degenerate inputs, batch
invariance, the confidence's fit term against a quadrature, separation of free-field mixtures
initialised from the ``delay`` teacher."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from test_teacher_delay import CFG, FREQS, MICS, free_field_mixture, masked_si_sdri

from bootsep.errors import BootsepError
from bootsep.pipeline.features import fit_mask, log_magnitude_db
from bootsep.pipeline.stft import stft
from bootsep.pipeline.teachers.cacgmm import (
    CacgmmModel,
    cacg_jsd,
    cacgmm_masks,
    fit_model,
)
from bootsep.pipeline.teachers.delay import delay_masks

# --------------------------------------------------------------------------- reference


def reference_em(X, init, iterations, eps, threshold_db=-40.0, prior=None, beta=1.0):
    """Plain per-frequency EM of one mixture ``X (C, T, F)`` from ``init (T, F, K)``, written
    from the equations with one matrix at a time (complex128): weighted M-step (weights
    ``|X_0|`` on the fit bins scaled by their maximum), trace-C normalisation, ``(B + eps I) /
    (1 + eps)``, E-step, times ``prior (T, F, K) ** beta`` when given (a product of experts).
    Returns posteriors ``(T, F, K)``, priors ``(F, K)`` and covariances ``(F, K, C, C)``."""
    C, T, F = X.shape
    K = init.shape[-1]
    fit = fit_mask(log_magnitude_db(X[0])[None], None, threshold_db)[0] & (X != 0).all(axis=0)
    w = np.where(fit, np.abs(X[0]), 0.0)
    w = w / w.max()
    post, pris, covs = np.zeros((T, F, K)), np.zeros((F, K)), np.zeros((F, K, C, C), complex)
    for f in range(F):
        z = X[:, :, f].T.astype(np.complex128)
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        g, q = init[:, f].astype(np.float64), np.ones((T, K))
        for _ in range(iterations + 1):
            pri = np.array([(g[:, k] * w[:, f]).sum() for k in range(K)])
            pri = np.maximum(pri / pri.sum() if pri.sum() > 0 else np.full(K, 1 / K), 1e-6)
            pri /= pri.sum()
            covs_f = []
            for k in range(K):
                S = np.zeros((C, C), complex)
                for t in range(T):
                    S += g[t, k] * w[t, f] / q[t, k] * np.outer(z[t], z[t].conj())
                S = S * C / np.trace(S).real if np.trace(S).real > 0 else np.eye(C)  # no bins
                covs_f.append((S + eps * np.eye(C)) / (1 + eps))
            logp = np.empty((T, K))
            for k in range(K):
                A = np.linalg.inv(covs_f[k])
                q[:, k] = np.einsum("tc,cd,td->t", z.conj(), A, z).real
                logp[:, k] = np.log(pri[k]) - np.linalg.slogdet(covs_f[k])[1] \
                    - C * np.log(q[:, k])
                if prior is not None:
                    logp[:, k] += beta * np.log(prior[:, f, k])
            g = np.exp(logp - logp.max(axis=1, keepdims=True))
            g /= g.sum(axis=1, keepdims=True)
        post[:, f], pris[f], covs[f] = g, pri, np.array(covs_f)
    return post, pris, covs


def test_matches_a_plain_per_frequency_reference():
    mix, _ = free_field_mixture(2, (200.0, 300.0), n=6000)
    X = stft(mix, CFG)[None, :4, :, :40]                           # 4 mics, 0-1.2 kHz
    init = delay_masks(X, freqs=FREQS[:40], mic_pos=MICS[:4]).posteriors
    res = cacgmm_masks(X, init_posteriors=init, iterations=4, eps=0.05)
    post, pri, cov = reference_em(X[0], init[0], iterations=4, eps=0.05)
    assert not res.degenerate[0]
    # float32 features and quadratic forms: the posteriors agree to 1e-4, the parameters
    # to a relative 1e-4
    np.testing.assert_allclose(res.posteriors[0], post, atol=1e-4)
    np.testing.assert_allclose(res.model.priors[0], pri, atol=1e-5)
    np.testing.assert_allclose(res.model.covariances[0], cov, atol=1e-4 * np.abs(cov).max())
    # some bins changed their label: the reference is not just the init
    assert np.mean(res.labels[0] != init[0].argmax(-1)) > 0.002
    # the 1-component model: the same EM with a single component (posteriors all 1)
    one = fit_model(X, iterations=4, eps=0.05)
    _, pri1, cov1 = reference_em(X[0], np.ones(init[0].shape[:2] + (1,)), iterations=4,
                                 eps=0.05)
    np.testing.assert_allclose(one.model.covariances[0], cov1, atol=1e-4 * np.abs(cov1).max())
    assert np.all(one.model.priors == 1.0)


def test_fit_model_holds_the_posteriors():
    """fit_model holds the posteriors: its priors are the M-step's from them, its covariances
    the fixed point of the update with the posteriors held (not the scatter matrix the EM's
    first M-step gives, which the reference reproduces), and further updates keep them."""
    mix, _ = free_field_mixture(8, (60.0, 150.0), n=6000)
    X = stft(mix, CFG)[None, :4, :, :40]
    init = delay_masks(X, freqs=FREQS[:40], mic_pos=MICS[:4]).posteriors
    fitted = fit_model(X, init, iterations=30, eps=0.1)
    res = cacgmm_masks(X, init_posteriors=init, iterations=0, eps=0.1)   # one M-step
    _, _, cov = reference_em(X[0], init[0], iterations=0, eps=0.1)
    np.testing.assert_allclose(res.model.covariances[0], cov, atol=1e-4 * np.abs(cov).max())
    # the fixed point for held posteriors differs from the scatter matrix it starts from
    assert np.abs(fitted.model.covariances - res.model.covariances).max() > 1e-2
    np.testing.assert_allclose(fitted.model.priors, res.model.priors, atol=1e-6)
    again = fit_model(X, init, iterations=31, eps=0.1)
    np.testing.assert_allclose(again.model.covariances, fitted.model.covariances, atol=1e-3)


# --------------------------------------------------------------------------- a per-bin prior

def _noisy_prior(rng, labels, K, right):
    """Per-bin probabilities ``(T, F, K)``: ``right`` on the true label, the rest shared."""
    prior = np.full(labels.shape + (K,), (1.0 - right) / (K - 1))
    np.put_along_axis(prior, labels[..., None], right, axis=-1)
    return prior


def test_prior_matches_the_reference_product_of_experts():
    """With a per-bin prior (a student's masks in a self-training round) every E-step's
    posterior is the reference's ``pi p(z | k) prior^beta``, normalised."""
    rng = np.random.default_rng(5)
    mix, _ = free_field_mixture(2, (200.0, 300.0), n=6000)
    X = stft(mix, CFG)[None, :4, :, :40]
    init = delay_masks(X, freqs=FREQS[:40], mic_pos=MICS[:4]).posteriors
    prior = rng.dirichlet(np.ones(2), size=init.shape[1:3])                # (T, F, K)
    res = cacgmm_masks(X, init_posteriors=init, iterations=3, eps=0.05, prior=prior[None],
                       prior_weight=0.7)
    post, pri, cov = reference_em(X[0], init[0], iterations=3, eps=0.05, prior=prior, beta=0.7)
    np.testing.assert_allclose(res.posteriors[0], post, atol=1e-4)
    np.testing.assert_allclose(res.model.covariances[0], cov, atol=1e-4 * np.abs(cov).max())
    plain = cacgmm_masks(X, init_posteriors=init, iterations=3, eps=0.05)
    assert np.abs(plain.posteriors - res.posteriors).max() > 0.1           # it did something


def test_an_uninformative_prior_changes_nothing():
    """A uniform prior, or any prior at weight 0, leaves the spatial posteriors as they are."""
    mix, _ = free_field_mixture(3, (40.0, 130.0), n=6000)
    X = stft(mix, CFG)[None, :4, :, :40]
    init = delay_masks(X, freqs=FREQS[:40], mic_pos=MICS[:4]).posteriors
    plain = cacgmm_masks(X, init_posteriors=init, iterations=3)
    uniform = cacgmm_masks(X, init_posteriors=init, iterations=3, prior=np.full(init.shape, 0.5))
    np.testing.assert_allclose(uniform.posteriors, plain.posteriors, atol=1e-4)   # float32
    other = np.random.default_rng(0).dirichlet(np.ones(2), size=init.shape[:3])
    off = cacgmm_masks(X, init_posteriors=init, iterations=3, prior=other, prior_weight=0.0)
    np.testing.assert_array_equal(off.posteriors, plain.posteriors)


def test_a_right_prior_improves_a_weak_spatial_model():
    """Self-training's premise on the cACGMM: on mixtures a spatial model barely separates
    (two alike components on two channels: 71 % of the bins right) a prior that is right on
    70 % of the bins (a student's) combined with the model labels more bins right (75 %) than
    the model alone from the same start, and than the prior alone."""
    rng = np.random.default_rng(8)
    F, T, K, C = 6, 600, 2, 2
    base = [random_cacg(rng, C, 1.0) for _ in range(F)]         # components alike: a weak model
    covs = np.array([[base[f] + 6.0 * random_cacg(rng, C, 5.0) for _ in range(K)]
                     for f in range(F)])
    X, labels = draw_cacgmm(rng, covs, np.array([0.5, 0.5]), T)
    prior = _noisy_prior(rng, np.where(rng.random((T, F)) < 0.3, 1 - labels, labels), K, 0.7)
    start = 0.5 * _noisy_prior(rng, labels, K, 0.6) + 0.5 * prior          # a weak start

    def accuracy(lab):
        return max(np.mean(lab == labels), np.mean(lab == 1 - labels))

    alone = cacgmm_masks(X[None], init_posteriors=start[None], iterations=5, eps=1e-4,
                         weight_power=0.0)
    both = cacgmm_masks(X[None], init_posteriors=start[None], iterations=5, eps=1e-4,
                        weight_power=0.0, prior=prior[None])
    acc_alone, acc_both = accuracy(alone.labels[0]), accuracy(both.labels[0])
    acc_prior = accuracy(prior.argmax(-1))
    assert acc_alone < 0.75 and acc_both > max(acc_alone, acc_prior) + 0.03, \
        (acc_alone, acc_prior, acc_both)


@pytest.mark.parametrize("prior,weight,problem", [
    (np.full((1, 5, 3, 2), 0.5), 1.0, "prior must be (B, T, F, K)"),
    (np.zeros((1, 4, 3, 2)), 1.0, "finite and positive"),
    (np.full((1, 4, 3, 2), 0.5), -1.0, "prior_weight must be >= 0"),
])
def test_a_bad_prior_is_a_one_line_error(prior, weight, problem):
    X = (np.ones((1, 2, 4, 3)) + 1j).astype(np.complex64)
    with pytest.raises(BootsepError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        cacgmm_masks(X, init_posteriors=np.full((1, 4, 3, 2), 0.5), prior=prior,
                     prior_weight=weight)


# --------------------------------------------------------------------------- drawn from the model

def random_cacg(rng, C, sharpness):
    """A Hermitian PD matrix with a dominant random direction (trace C)."""
    h = rng.standard_normal(C) + 1j * rng.standard_normal(C)
    h /= np.linalg.norm(h)
    G = rng.standard_normal((C, C)) + 1j * rng.standard_normal((C, C))
    Bm = sharpness * np.outer(h, h.conj()) + G @ G.conj().T / C
    return Bm * C / np.trace(Bm).real


def draw_cacgmm(rng, covs, priors, T):
    """``X (C, T, F)`` and labels ``(T, F)`` from per-frequency cACG mixtures ``covs (F, K, C,
    C)``, ``priors (K,)``: ``y ~ CN(0, B)`` scaled to unit norm, times a Rayleigh magnitude
    and a random global phase."""
    F, K, C, _ = covs.shape
    labels = rng.choice(K, size=(T, F), p=priors)
    L = np.linalg.cholesky(covs)                                           # (F, K, C, C)
    g = rng.standard_normal((T, F, C)) + 1j * rng.standard_normal((T, F, C))
    y = np.einsum("tfcd,tfd->tfc", L[np.arange(F)[None], labels], g)
    z = y / np.linalg.norm(y, axis=-1, keepdims=True)
    mag = rng.rayleigh(1.0, (T, F, 1)) * np.exp(1j * rng.uniform(-np.pi, np.pi, (T, F, 1)))
    return np.moveaxis(z * mag, -1, 0).astype(np.complex64), labels


def log_density(z, cov):
    C = z.shape[-1]
    q = np.einsum("...c,cd,...d->...", z.conj(), np.linalg.inv(cov), z).real
    return -np.linalg.slogdet(cov)[1] - C * np.log(q) + math.lgamma(C) - math.log(2 * np.pi ** C)


@pytest.mark.parametrize("K,C", [(2, 3), (2, 4), (3, 4)])
def test_recovers_parameters_and_labels_drawn_from_the_model(K, C):
    rng = np.random.default_rng(10 * K + C)
    F, T = 5, 800
    covs = np.array([[random_cacg(rng, C, 20.0) for _ in range(K)] for _ in range(F)])
    priors = np.array([0.5, 0.3, 0.2])[:K] / np.array([0.5, 0.3, 0.2])[:K].sum()
    X, labels = draw_cacgmm(rng, covs, priors, T)
    # init: the generating labels with 30 % of the bins assigned at random, softened
    noisy = np.where(rng.random((T, F)) < 0.3, rng.integers(0, K, (T, F)), labels)
    init = np.full((T, F, K), 0.3 / (K - 1))
    np.put_along_axis(init, noisy[..., None], 0.7, axis=-1)
    # unweighted (weight_power 0): |X_0| = |z_0| x magnitude depends on the component, so
    # magnitude-weighted priors are the components' shares of the weight, not of the bins
    res = cacgmm_masks(X[None], init_posteriors=init[None], iterations=20, eps=1e-4,
                       weight_power=0.0)
    assert not res.degenerate[0]
    # the Bayes classifier under the true parameters: the best any fit can do
    z = np.moveaxis(X, 0, -1).astype(np.complex128)
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    lp = np.stack([[log_density(z[:, f], covs[f, k]) for k in range(K)] for f in range(F)])
    bayes = (lp + np.log(priors)[None, :, None]).argmax(axis=1).T          # (T, F)
    perm = max(itertools.permutations(range(K)),           # fitted component for each source
               key=lambda p: np.mean(np.asarray(p)[labels] == res.labels[0]))
    acc = np.mean(np.asarray(perm)[labels] == res.labels[0])
    assert acc >= 0.9
    assert acc >= np.mean(bayes == labels) - 0.01
    # covariances up to scale (both trace C), priors
    est = res.model.covariances[0][:, list(perm)]
    err = np.linalg.norm(est - covs, axis=(-2, -1)) / np.linalg.norm(covs, axis=(-2, -1))
    assert err.max() < 0.15          # 0.07-0.085 here; the scatter matrix alone (no 1/q): 0.6
    assert np.allclose(res.model.priors[0][:, list(perm)], priors, atol=0.06)


# --------------------------------------------------------------------------- free field

@pytest.mark.parametrize("azimuths,seed", [((20.0, 45.0), 1), ((200.0, 300.0), 2)])
def test_free_field_two_sources_on_four_mics_separate(azimuths, seed):
    mix, images = free_field_mixture(seed, azimuths)
    X = stft(mix, CFG)[None, :4]
    init = delay_masks(X, freqs=FREQS, mic_pos=MICS[:4])
    res = cacgmm_masks(X, init_posteriors=init.posteriors, init_degenerate=init.degenerate)
    assert not res.degenerate[0]
    assert masked_si_sdri(res, X, mix, images) >= 10.0
    np.testing.assert_allclose(res.posteriors.sum(axis=-1), 1.0, atol=1e-5)
    assert np.array_equal(res.labels, res.posteriors.argmax(axis=-1))
    # components keep the init's order: the labels mostly agree with the delay teacher's
    agree = np.average(res.labels[0] == init.labels[0], weights=np.abs(X[0, 0]))
    assert agree > 0.85


def test_three_sources():
    azimuths = (10.0, 130.0, 250.0)
    mix, images = free_field_mixture(5, azimuths)
    X = stft(mix, CFG)[None]
    init = delay_masks(X, freqs=FREQS, num_components=3, mic_pos=MICS)
    res = cacgmm_masks(X, init_posteriors=init.posteriors)
    assert not res.degenerate[0] and res.posteriors.shape[-1] == 3
    assert res.model.covariances.shape == (1, FREQS.size, 3, 8, 8)
    assert masked_si_sdri(res, X, mix, images) >= 8.0


# --------------------------------------------------------------------------- degenerate input

def test_degenerate_inputs_are_uniform_without_nan():
    one, _ = free_field_mixture(3, (70.0,))
    X = stft(one, CFG)[:4]
    silence = np.zeros_like(X)
    identical = np.repeat(X[:1], 4, axis=0)
    dead = X.copy()
    dead[2] = 0
    batch = np.stack([silence, X, identical, dead])
    # the init is random (not uniform): each mixture must be flagged by the checks of the
    # teacher itself (no fit bins, the one-source mixture's flat delay init, a channel
    # without spatial cue)
    rng = np.random.default_rng(0)
    init = rng.dirichlet([1.0, 1.0], size=batch.shape[:1] + batch.shape[2:])
    init[1] = delay_masks(batch[1:2], freqs=FREQS, mic_pos=MICS[:4]).posteriors[0]
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        res = cacgmm_masks(batch, init_posteriors=init)
        one_fit = fit_model(batch)
        jsd = cacg_jsd(res.model, one_fit.model, res.freq_weights, 200,
                       degenerate=res.degenerate)
    assert res.degenerate.all()
    assert np.all(res.posteriors == np.float32(0.5)) and np.all(res.labels == 0)
    for a in (res.model.priors, res.model.covariances, res.log_likelihood, res.freq_weights):
        assert np.all(np.isfinite(a))
    assert res.fit_bins[0] == 0 and res.fit_bins[3] == 0 and res.fit_bins[1] > 0
    assert np.all(jsd == 0)
    # the init teacher's flag alone also makes a mixture degenerate
    two, _ = free_field_mixture(4, (100.0, 160.0))
    X2 = stft(two, CFG)[None, :4]
    d = delay_masks(X2, freqs=FREQS, mic_pos=MICS[:4])
    assert not cacgmm_masks(X2, init_posteriors=d.posteriors).degenerate[0]
    assert cacgmm_masks(X2, init_posteriors=d.posteriors, init_degenerate=[True]).degenerate[0]


# --------------------------------------------------------------------------- batching

def test_result_does_not_depend_on_the_batch():
    mixes = [free_field_mixture(s, az, n=n)[0] for s, az, n in
             [(11, (30.0, 90.0), int(1.2 * 8000)), (12, (200.0, 330.0), 2 * 8000),
              (13, (0.0, 140.0), int(1.6 * 8000))]]
    specs = [stft(m, CFG)[:4] for m in mixes]
    T = max(s.shape[1] for s in specs)
    X = np.zeros((3, 4, T, FREQS.size), np.complex64)
    valid = np.zeros((3, T), bool)
    for b, s in enumerate(specs):
        X[b, :, : s.shape[1]] = s
        valid[b, : s.shape[1]] = True
    init = delay_masks(X, valid, freqs=FREQS, mic_pos=MICS[:4]).posteriors
    batch = cacgmm_masks(X, valid, init_posteriors=init, single_model=True)
    one = fit_model(X, valid=valid)
    np.testing.assert_array_equal(batch.single_model.covariances, one.model.covariances)
    assert cacgmm_masks(X, valid, init_posteriors=init).single_model is None
    jsd = cacg_jsd(batch.model, one.model, batch.freq_weights, 500, seeds=[5, 6, 7])
    for b, s in enumerate(specs):
        t = s.shape[1]
        alone = cacgmm_masks(s[None], init_posteriors=init[b: b + 1, :t])
        np.testing.assert_allclose(batch.posteriors[b, :t], alone.posteriors[0], atol=1e-4)
        np.testing.assert_allclose(batch.model.covariances[b], alone.model.covariances[0],
                                   atol=1e-4)
        assert np.array_equal(batch.fit_mask[b, :t], alone.fit_mask[0])
        assert np.all(batch.posteriors[b, t:] == np.float32(0.5))
        assert np.all(batch.labels[b, t:] == 0)
        one_b = fit_model(s[None])
        jb = cacg_jsd(alone.model, one_b.model, alone.freq_weights, 500, seeds=[5 + b])
        assert jb[0] == pytest.approx(jsd[b], abs=1e-4)
        assert 0.0 < jsd[b] < 1.0


# --------------------------------------------------------------------------- fit term

def _quadrature_jsd(covs_q, pri_q, covs_p, n=600):
    """JSD (base 2) of the 1-frequency, C = 2 laws by a midpoint rule on the complex unit
    sphere modulo the global phase: ``z = (cos eta, sin eta e^{j phi})``, ``dS = 2 pi sin eta
    cos eta d eta d phi`` (the global phase integrated out; total 2 pi^2). Returns the JSD
    and the integral of P's density (1 when the normalisation is right)."""
    eta = (np.arange(n) + 0.5) * (np.pi / 2 / n)
    ph = (np.arange(2 * n) + 0.5) * (np.pi / n)
    E, Ph = np.meshgrid(eta, ph, indexing="ij")
    z = np.stack([np.cos(E) + 0j, np.sin(E) * np.exp(1j * Ph)], axis=-1)
    dS = 2 * np.pi * np.sin(E) * np.cos(E) * (np.pi / 2 / n) * (np.pi / n)
    p = np.exp(log_density(z, covs_p))
    q = sum(pr * np.exp(log_density(z, c)) for pr, c in zip(pri_q, covs_q))
    m = 0.5 * (p + q)
    jsd = 0.5 * np.sum(dS * p * np.log2(p / m)) + 0.5 * np.sum(dS * q * np.log2(q / m))
    return jsd, float(np.sum(dS * p))


def test_cacg_jsd_matches_a_quadrature():
    rng = np.random.default_rng(3)
    F, C = 2, 2
    covs_q = np.array([[random_cacg(rng, C, 3.0) for _ in range(2)] for _ in range(F)])
    pri_q = np.array([[0.7, 0.3], [0.4, 0.6]])
    covs_p = np.array([[random_cacg(rng, C, 1.0)] for _ in range(F)])
    fw = np.array([0.25, 0.75])
    exact = 0.0
    for f in range(F):
        j, mass = _quadrature_jsd(covs_q[f], pri_q[f], covs_p[f, 0])
        assert mass == pytest.approx(1.0, abs=1e-4)
        exact += fw[f] * j
    assert 0.02 < exact < 0.5
    n = 40000
    est = cacg_jsd(CacgmmModel(pri_q[None], covs_q[None]),
                   CacgmmModel(np.ones((1, F, 1)), covs_p[None]), fw[None], n, seed=1)
    # Monte Carlo standard error of the mean of terms bounded by 1 (in bits): < 0.5 / sqrt(n)
    assert est[0] == pytest.approx(exact, abs=4 * 0.5 / np.sqrt(n))
    # identical laws: 0; any seed: within [0, 1]
    same = cacg_jsd(CacgmmModel(np.full((1, F, 2), 0.5), np.repeat(covs_p[None], 2, axis=2)),
                    CacgmmModel(np.ones((1, F, 1)), covs_p[None]), fw[None], 1000, seed=2)
    assert same[0] < 1e-9
    # very different laws: near the maximum, still at most 1
    sharp = np.array([[np.diag([1.998, 0.002]), np.diag([0.002, 1.998])]] * F)
    far = cacg_jsd(CacgmmModel(np.full((1, F, 2), 0.5), sharp[None]),
                   CacgmmModel(np.ones((1, F, 1)), np.repeat(sharp[None, :, :1], 1, 0)),
                   fw[None], 2000, seed=3)
    assert 0.2 < far[0] <= 1.0


@pytest.mark.parametrize("kwargs,problem", [
    (dict(X=np.zeros((1, 1, 4, 129), np.complex64)), "C >= 2"),
    (dict(init_posteriors=np.full((1, 4, 129, 1), 1.0)), "init_posteriors"),
    (dict(init_posteriors=np.full((1, 5, 129, 2), 0.5)), "init_posteriors"),
    (dict(valid=np.ones((1, 5), bool)), "valid"),
    (dict(priors="tied"), "priors"),
])
def test_bad_input_is_a_one_line_error(kwargs, problem):
    kw = {"X": np.zeros((1, 2, 4, 129), np.complex64),
          "init_posteriors": np.full((1, 4, 129, 2), 0.5), **kwargs}
    X = kw.pop("X")
    with pytest.raises(BootsepError, match=problem):
        cacgmm_masks(X, **kw)
