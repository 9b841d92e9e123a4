"""The ``delay`` teacher's fit term (pipeline/teachers/delay_jsd.py, generalised eq. 5): Monte
Carlo JSD against a brute-force integral, its properties, and free-field mixtures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import vonmises
from test_teacher_delay import CFG, FREQS, MICS, free_field_mixture

from bootsep.errors import BootsepError
from bootsep.pipeline.jobs import mixture_seed
from bootsep.pipeline.stft import stft
from bootsep.pipeline.teachers.delay import delay_masks
from bootsep.pipeline.teachers.delay_jsd import DelayModel, delay_jsd, fit_frequency_weights


def model(priors, outlier, delays, kappa):
    """A batch of one model: priors (K,), delays and kappa (K, P)."""
    return DelayModel(np.array([priors], float), np.array([outlier], float),
                      np.array([delays], float), np.array([kappa], float))


def stack(*models):
    return DelayModel(*(np.concatenate([getattr(m, a) for m in models])
                        for a in ("priors", "outlier_prior", "delays", "kappa")))


# --------------------------------------------------------------------------- brute force

def brute_force_jsd(mk, m1, weights, freqs, M):
    """``sum_f w_f JSD(p1(.|f), pK(.|f))`` (the frequency law is shared by both joints) with
    the conditional JSD a rectangle rule on an ``M^P`` grid over the torus (spectrally
    accurate for smooth periodic integrands); densities from scipy.stats.vonmises."""
    P = mk.delays.shape[-1]
    axes = np.meshgrid(*[-np.pi + 2 * np.pi * np.arange(M) / M] * P, indexing="ij")
    grid = np.stack([a.ravel() for a in axes], axis=-1)                     # (M^P, P)
    dA = (2 * np.pi / M) ** P

    def density(m, f):
        p = np.full(grid.shape[0], m.outlier_prior[0] / (2 * np.pi) ** P)
        for k in range(m.priors.shape[1]):
            mu = -2 * np.pi * f * m.delays[0, k]
            p += m.priors[0, k] * np.prod(vonmises.pdf(grid, m.kappa[0, k], loc=mu), axis=1)
        return p

    total = 0.0
    for wf, f in zip(weights / weights.sum(), freqs):
        if wf == 0:
            continue
        p, q = density(m1, f), density(mk, f)
        mid = 0.5 * (p + q)
        total += wf * 0.5 * dA * (np.sum(p * np.log2(p / mid)) + np.sum(q * np.log2(q / mid)))
    return total


@pytest.mark.parametrize("P,n,M", [(1, 200_000, 4096), (2, 100_000, 256)])
def test_monte_carlo_matches_the_brute_force_integral(P, n, M):
    freqs = np.array([0.0, 400.0, 1100.0, 2300.0, 3700.0])
    weights = np.array([[0.5, 2.0, 0.0, 3.0, 1.0]])
    mk = model([0.5, 0.35], 0.15, [[-2.1e-4, 1.3e-4], [3.0e-4, -0.6e-4]],
               [[8.0, 4.0], [20.0, 12.0]])
    m1 = model([0.8], 0.2, [[0.7e-4, 0.2e-4]], [[3.0, 5.0]])
    if P == 1:
        mk = DelayModel(mk.priors, mk.outlier_prior, mk.delays[..., :1], mk.kappa[..., :1])
        m1 = DelayModel(m1.priors, m1.outlier_prior, m1.delays[..., :1], m1.kappa[..., :1])
    exact = brute_force_jsd(mk, m1, weights[0], freqs, M)
    mc = delay_jsd(mk, m1, weights, freqs, n, seeds=[5])
    assert 0.05 < exact < 0.95                                   # a non-trivial case
    # standard error <= 0.5 / sqrt(n) <= 0.0016: 0.005 is over 3 standard errors
    assert mc[0] == pytest.approx(exact, abs=0.005)


# --------------------------------------------------------------------------- properties

FREQ_SEP = np.array([625.0, 1250.0, 1875.0, 3000.0])
W_SEP = np.array([[1.0, 2.0, 1.0, 0.0]])      # Delta mu = 2 pi f 4e-4 = pi/2, pi, 3 pi/2


def separated_jsd(w):
    """JSD of P_1 = A and P_K = w A + (1 - w) B with A, B of disjoint supports:
    ``1/2 log2(2 / (1 + w)) + 1/2 [w log2(2 w / (1 + w)) + (1 - w)]``."""
    return 0.5 * np.log2(2 / (1 + w)) + 0.5 * (w * np.log2(2 * w / (1 + w)) + (1 - w))


@pytest.mark.parametrize("w", [0.5, 0.7])
def test_well_separated_sources_give_the_analytic_value(w):
    mk = model([w, 1 - w], 0.0, [[-2e-4], [2e-4]], [[1000.0], [1000.0]])
    m1 = model([1.0], 0.0, [[-2e-4]], [[1000.0]])
    got = delay_jsd(mk, m1, W_SEP, FREQ_SEP, 20_000, seeds=[1])[0]
    assert got == pytest.approx(separated_jsd(w), abs=0.01)
    # a 1-source model apart from both sources: the largest divergence, 1
    apart = model([1.0], 0.0, [[0.0]], [[1000.0]])
    at_pi = np.array([[0.0, 1.0, 0.0, 0.0]])                    # mu: 0 against +-pi/2
    assert delay_jsd(mk, apart, at_pi, FREQ_SEP, 2000, seeds=[1])[0] > 0.999


def test_identical_models_give_zero():
    m = model([0.45, 0.45], 0.1, [[-2e-4, 1e-4], [2e-4, 3e-4]], [[30.0, 5.0], [9.0, 60.0]])
    assert delay_jsd(m, m, W_SEP, FREQ_SEP, 5000, seeds=[3])[0] == pytest.approx(0, abs=1e-12)
    # two copies of one source are that source
    twin = model([0.45, 0.45], 0.1, [[1e-4, 2e-4]] * 2, [[30.0, 5.0]] * 2)
    one = model([0.9], 0.1, [[1e-4, 2e-4]], [[30.0, 5.0]])
    assert delay_jsd(twin, one, W_SEP, FREQ_SEP, 5000, seeds=[3])[0] == pytest.approx(0,
                                                                                      abs=1e-9)


def random_models(rng, B, K, P):
    pri = rng.dirichlet(np.ones(K + 1), size=B)
    return DelayModel(pri[:, :K], pri[:, K], rng.uniform(-4e-4, 4e-4, (B, K, P)),
                      rng.uniform(1.0, 300.0, (B, K, P)))


def test_degenerate_mixtures_get_exactly_zero_and_leave_the_others_alone():
    rng = np.random.default_rng(0)
    B, P = 5, 3
    mk, m1 = random_models(rng, B, 2, P), random_models(rng, B, 1, P)
    kappa = mk.kappa.copy()
    kappa[3, 1, 2] = np.nan                                   # unusable parameters
    mk = DelayModel(mk.priors, mk.outlier_prior, mk.delays, kappa)
    w = rng.random((B, FREQS.size))
    w[2] = 0                                                  # no fit bin
    seeds = [[9, b] for b in range(B)]
    flag = np.array([False, True, False, False, False])
    with np.errstate(divide="raise", invalid="raise", over="raise"):   # no 0/0, log 0, inf
        got = delay_jsd(mk, m1, w, FREQS, 3000, seeds, degenerate=flag)
    assert np.all(got[1:4] == 0.0)
    assert np.all((got[[0, 4]] > 0.05) & (got[[0, 4]] <= 1))
    clean = delay_jsd(mk, m1, w, FREQS, 3000, seeds)
    assert clean[1] > 0.05 and clean[0] == got[0] and clean[4] == got[4]


def test_a_mixture_gets_the_same_value_alone_and_in_any_batch():
    rng = np.random.default_rng(1)
    B, P, n = 12, 7, 2000                        # 12 mixtures span two density blocks
    mk, m1 = random_models(rng, B, 2, P), random_models(rng, B, 1, P)
    w = rng.random((B, FREQS.size))
    seeds = [mixture_seed(4, f"mix{b}") for b in range(B)]
    batch = delay_jsd(mk, m1, w, FREQS, n, seeds)
    assert np.all((batch > 0) & (batch <= 1))
    for b in (0, 10):
        sel = [b]
        alone = delay_jsd(*(DelayModel(*(getattr(m, a)[sel] for a in
                                         ("priors", "outlier_prior", "delays", "kappa")))
                            for m in (mk, m1)), w[sel], FREQS, n, [seeds[b]])
        assert alone[0] == batch[b]
    rev = slice(None, None, -1)
    flipped = delay_jsd(*(DelayModel(*(getattr(m, a)[rev] for a in
                                       ("priors", "outlier_prior", "delays", "kappa")))
                          for m in (mk, m1)), w[rev], FREQS, n, seeds[::-1])
    assert np.array_equal(flipped[::-1], batch)
    # the seed matters: another seed gives another (close) estimate
    other = delay_jsd(mk, m1, w, FREQS, n, [[5, b] for b in range(B)])
    assert not np.array_equal(other, batch) and np.allclose(other, batch, atol=0.05)


def test_permuting_the_sources_gives_exactly_the_same_value():
    rng = np.random.default_rng(2)
    mk, m1 = random_models(rng, 4, 3, 2), random_models(rng, 4, 1, 2)
    w = rng.random((4, FREQS.size))
    seeds = [[1, b] for b in range(4)]
    got = delay_jsd(mk, m1, w, FREQS, 3000, seeds)
    perm = [2, 0, 1]
    pk = DelayModel(mk.priors[:, perm], mk.outlier_prior, mk.delays[:, perm], mk.kappa[:, perm])
    assert np.array_equal(delay_jsd(pk, m1, w, FREQS, 3000, seeds), got)


def test_bad_input_is_a_one_line_error():
    m = model([1.0], 0.0, [[0.0]], [[1.0]])
    with pytest.raises(BootsepError, match="seeds"):
        delay_jsd(m, m, W_SEP, FREQ_SEP, 10, seeds=[1, 2])
    with pytest.raises(BootsepError, match="freq_weights"):
        delay_jsd(m, m, W_SEP[:, :2], FREQ_SEP, 10, seeds=[1])
    with pytest.raises(BootsepError, match="model_1"):
        delay_jsd(m, model([1.0], 0.0, [[0.0, 0.0]], [[1.0, 1.0]]), W_SEP, FREQ_SEP, 10, [1])
    with pytest.raises(BootsepError, match="n_samples"):
        delay_jsd(m, m, W_SEP, FREQ_SEP, 0, seeds=[1])


# --------------------------------------------------------------------------- free field

@pytest.mark.parametrize("geometry", [False, True])
def test_two_source_mixture_scores_higher_than_one_source(geometry):
    mixes = [free_field_mixture(s, az)[0] for s, az in [(21, (40.0, 110.0)), (22, (70.0,))]]
    X = np.stack([stft(m, CFG) for m in mixes])                          # (2, 8, T, F)
    kw = dict(freqs=FREQS, mic_pos=MICS) if geometry else dict(freqs=FREQS)
    if not geometry:
        X = X[:, :2]
    res2 = delay_masks(X, num_components=2, **kw)
    res1 = delay_masks(X, num_components=1, **kw)
    assert np.array_equal(res1.fit_mask, res2.fit_mask)                  # the same bins
    w = fit_frequency_weights(X[:, 0], res2.fit_mask)
    jsd = delay_jsd(DelayModel.from_result(res2), DelayModel.from_result(res1), w, FREQS,
                    2000, seeds=[[0, 1], [0, 2]])
    assert jsd[0] > 0.15 and jsd[1] < 0.05       # measured: 0.54 / 0.0 pair, 0.23 / 0.003 all
    # the flag of the K = 2 fit zeroes the one-source mixture if it is flagged
    flagged = delay_jsd(DelayModel.from_result(res2), DelayModel.from_result(res1), w, FREQS,
                        2000, seeds=[[0, 1], [0, 2]], degenerate=res2.degenerate)
    assert flagged[0] == jsd[0] and (flagged[1] == 0) == res2.degenerate[1]
