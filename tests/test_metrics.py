"""SI-SDR/SI-SIR/SI-SAR against fast_bss_eval and torchmetrics; invariances; permutations; edge
cases; stats."""

import numpy as np
import pytest
from scipy import stats

from bootsep.evaluate.metrics import (
    best_permutation,
    pairwise_si_sdr_components,
    separation_metrics,
    si_sdr,
    si_sdr_components,
)
from bootsep.evaluate.stats import mean_ci, pearson

TOL_DB = 0.01


def random_case(seed, batch=4, n_src=3, length=3000, offset=0.0):
    """References, and estimates that are noisy mixtures of them (SI-SDRs around 0–15 dB)."""
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((batch, n_src, length))
    mixing = rng.standard_normal((batch, n_src, n_src)) * 0.4 + np.eye(n_src)
    est = mixing @ refs + 0.3 * rng.standard_normal((batch, n_src, length)) + offset
    return est, refs


@pytest.mark.parametrize("zero_mean", [False, True])
def test_matches_fast_bss_eval(zero_mean):
    fast_bss_eval = pytest.importorskip("fast_bss_eval")
    est, refs = random_case(0, offset=0.5)
    sdr, sir, sar = fast_bss_eval.numpy.si_bss_eval_sources(refs, est, zero_mean=zero_mean,
                                                             compute_permutation=False)
    ours = si_sdr_components(est, refs, zero_mean=zero_mean, sar="bss_eval")
    np.testing.assert_allclose(ours["si_sdr"], sdr, atol=TOL_DB)
    np.testing.assert_allclose(ours["si_sir"], sir, atol=TOL_DB)
    np.testing.assert_allclose(ours["si_sar"], sar, atol=TOL_DB)
    # Le Roux SI-SAR: same SDR/SIR, and 10^(-SDR/10) = 10^(-SIR/10) + 10^(-SAR/10)
    lr = si_sdr_components(est, refs, zero_mean=zero_mean)
    np.testing.assert_allclose(lr["si_sdr"], sdr, atol=TOL_DB)
    np.testing.assert_allclose(lr["si_sir"], sir, atol=TOL_DB)
    np.testing.assert_allclose(10 ** (-lr["si_sdr"] / 10),
                               10 ** (-lr["si_sir"] / 10) + 10 ** (-lr["si_sar"] / 10), rtol=1e-9)


def test_matches_torchmetrics():
    torch = pytest.importorskip("torch")
    audio = pytest.importorskip("torchmetrics.functional.audio")
    est, refs = random_case(1)
    expected = audio.scale_invariant_signal_distortion_ratio(torch.from_numpy(est),
                                                             torch.from_numpy(refs)).numpy()
    np.testing.assert_allclose(si_sdr(est, refs), expected, atol=TOL_DB)
    np.testing.assert_allclose(si_sdr_components(est, refs)["si_sdr"], expected, atol=TOL_DB)


def test_pairwise_diagonal_and_si_sdr_agree():
    est, refs = random_case(2)
    pw = pairwise_si_sdr_components(est, refs)
    for i in range(3):
        for j in range(3):
            np.testing.assert_allclose(pw["si_sdr"][:, i, j], si_sdr(est[:, i], refs[:, j]),
                                       atol=1e-9)


def test_scale_invariance():
    est, refs = random_case(3)
    base = si_sdr_components(est, refs)
    for scale in (1e-6, 0.37, -2.0, 1e5):
        scaled = si_sdr_components(est * scale, refs)
        for k in base:
            np.testing.assert_allclose(scaled[k], base[k], atol=1e-8)
    np.testing.assert_allclose(si_sdr(est, refs * 7.0), si_sdr(est, refs), atol=1e-8)


def test_zero_mean_removes_offset():
    est, refs = random_case(4)
    np.testing.assert_allclose(si_sdr(est + 3.0, refs, zero_mean=True),
                               si_sdr(est, refs, zero_mean=True), atol=1e-9)
    assert not np.allclose(si_sdr(est + 3.0, refs), si_sdr(est, refs), atol=0.1)


def test_permutation_resolution():
    est, refs = random_case(5, batch=1, n_src=3)
    est, refs = est[0], refs[0]
    mix = refs.sum(axis=0)
    base = separation_metrics(est, refs, mix)
    np.testing.assert_array_equal(base["permutation"], [0, 1, 2])
    order = np.array([2, 0, 1])
    swapped = separation_metrics(est[order], refs, mix)
    # reference j is now served by the estimate at position where order == j
    np.testing.assert_array_equal(order[swapped["permutation"]], [0, 1, 2])
    for k in ("si_sdr", "si_sir", "si_sar", "si_sdri", "si_sdr_mixture"):
        np.testing.assert_allclose(swapped[k], base[k], atol=1e-9)


def test_permutation_maximises_mean_sdr_batched():
    est, refs = random_case(6, batch=8, n_src=2)
    m = separation_metrics(est[:, ::-1], refs)
    assert m["si_sdr"].shape == (8, 2) and m["permutation"].shape == (8, 2)
    np.testing.assert_array_equal(m["permutation"], np.tile([1, 0], (8, 1)))
    pw = pairwise_si_sdr_components(est[:, ::-1], refs)["si_sdr"]
    best = np.maximum(pw[:, 0, 0] + pw[:, 1, 1], pw[:, 0, 1] + pw[:, 1, 0]) / 2
    np.testing.assert_allclose(m["si_sdr"].mean(axis=1), best, atol=1e-9)


def test_hungarian_path_for_many_sources():
    rng = np.random.default_rng(7)
    score = rng.standard_normal((3, 8, 8))
    perm = best_permutation(score)
    assert sorted(perm[0].tolist()) == list(range(8))
    small = score[:, :5, :5]
    from scipy.optimize import linear_sum_assignment
    for b in range(3):
        _, cols = linear_sum_assignment(small[b].T, maximize=True)
        np.testing.assert_allclose(small[b][best_permutation(small[b]), np.arange(5)].sum(),
                                   small[b][cols, np.arange(5)].sum())
        _, cols = linear_sum_assignment(score[b].T, maximize=True)
        np.testing.assert_array_equal(perm[b], cols)


def test_silent_estimate_is_finite():
    _, refs = random_case(8, batch=1, n_src=2)
    refs = refs[0]
    est = np.stack([refs[0] + 0.1 * refs[1], np.zeros(refs.shape[1])])
    m = separation_metrics(est, refs, refs.sum(axis=0))
    for k in ("si_sdr", "si_sir", "si_sar", "si_sdri"):
        assert np.all(np.isfinite(m[k])), k
    np.testing.assert_array_equal(m["silent"], [False, True])
    assert m["si_sdr"][1] == 0.0
    all_silent = separation_metrics(np.zeros_like(refs), refs, refs.sum(axis=0))
    assert np.all(np.isfinite(all_silent["si_sdr"])) and all_silent["silent"].all()


def _two_source_case(seed, length=4000):
    """Two references and estimates of clearly different quality (about 15 and 4 dB)."""
    rng = np.random.default_rng(seed)
    refs = rng.standard_normal((2, length))
    est = np.stack([refs[0] + 0.18 * refs[1] + 0.1 * rng.standard_normal(length),
                    0.5 * refs[1] + 0.3 * refs[0] + 0.2 * rng.standard_normal(length)])
    return est, refs


def test_swapped_estimates_score_like_ordered_ones_against_references():
    # Catches: scores returned in estimate order instead of reference order (the two sources
    # score ~15 and ~4 dB here, so a swap shows), a permutation that is not [1, 0] for swapped
    # estimates, and SI-SDR/SIR/SAR that disagree with fast_bss_eval/torchmetrics.
    fast_bss_eval = pytest.importorskip("fast_bss_eval")
    torch = pytest.importorskip("torch")
    audio = pytest.importorskip("torchmetrics.functional.audio")
    est, refs = _two_source_case(11)
    mix = refs.sum(axis=0)
    sdr, sir, sar = fast_bss_eval.numpy.si_bss_eval_sources(refs, est, compute_permutation=False)
    tm = audio.scale_invariant_signal_distortion_ratio(torch.from_numpy(est),
                                                       torch.from_numpy(refs)).numpy()
    tm_mix = audio.scale_invariant_signal_distortion_ratio(
        torch.from_numpy(np.stack([mix, mix])), torch.from_numpy(refs)).numpy()
    assert sdr[0] - sdr[1] > 5                                   # a swap is visible
    ordered = separation_metrics(est, refs, mix, sar="bss_eval")
    swapped = separation_metrics(est[::-1], refs, mix, sar="bss_eval")
    np.testing.assert_array_equal(ordered["permutation"], [0, 1])
    np.testing.assert_array_equal(swapped["permutation"], [1, 0])
    for m in (ordered, swapped):
        np.testing.assert_allclose(m["si_sdr"], sdr, atol=TOL_DB)
        np.testing.assert_allclose(m["si_sdr"], tm, atol=TOL_DB)
        np.testing.assert_allclose(m["si_sir"], sir, atol=TOL_DB)
        np.testing.assert_allclose(m["si_sar"], sar, atol=TOL_DB)
        np.testing.assert_allclose(m["si_sdri"], tm - tm_mix, atol=TOL_DB)
        assert not m["silent"].any()
    for k in ("si_sdr", "si_sir", "si_sar", "si_sdri", "si_sdr_mixture"):
        np.testing.assert_allclose(swapped[k], ordered[k], atol=1e-9)


@pytest.mark.parametrize("silent_at", [0, 1])
def test_one_silent_estimate_the_other_scored_as_the_reference_does(silent_at):
    # The documented convention: an all-zero estimate scores 0 dB (finite) and is flagged
    # silent; the other estimate is scored as the reference implementations score it alone.
    # Catches: NaN/inf leaking from 0/0, the silent estimate dragging the permutation onto
    # the wrong reference, and the silent flag reported in estimate instead of reference
    # order (silent_at = 0 puts the silent estimate first, so it serves reference 1).
    fast_bss_eval = pytest.importorskip("fast_bss_eval")
    torch = pytest.importorskip("torch")
    audio = pytest.importorskip("torchmetrics.functional.audio")
    est, refs = _two_source_case(12)
    mix = refs.sum(axis=0)
    sdr, sir, sar = fast_bss_eval.numpy.si_bss_eval_sources(refs, est, compute_permutation=False)
    tm = audio.scale_invariant_signal_distortion_ratio(torch.from_numpy(est[0]),
                                                       torch.from_numpy(refs[0])).item()
    tm_mix = audio.scale_invariant_signal_distortion_ratio(torch.from_numpy(mix),
                                                           torch.from_numpy(refs[0])).item()
    pair = [est[0], np.zeros_like(est[0])]
    if silent_at == 0:
        pair = pair[::-1]
    with np.errstate(all="raise"):
        m = separation_metrics(np.stack(pair), refs, mix, sar="bss_eval")
    np.testing.assert_array_equal(m["permutation"], [1, 0] if silent_at == 0 else [0, 1])
    np.testing.assert_array_equal(m["silent"], [False, True])
    for k in ("si_sdr", "si_sir", "si_sar", "si_sdri"):
        assert np.isfinite(m[k]).all(), k
        assert m[k][1] == 0.0 or k == "si_sdri", k                 # 0 dB by the eps convention
    assert m["si_sdr"][0] == pytest.approx(sdr[0], abs=TOL_DB)
    assert m["si_sdr"][0] == pytest.approx(tm, abs=TOL_DB)
    assert m["si_sir"][0] == pytest.approx(sir[0], abs=TOL_DB)
    assert m["si_sar"][0] == pytest.approx(sar[0], abs=TOL_DB)
    assert m["si_sdri"][0] == pytest.approx(tm - tm_mix, abs=TOL_DB)
    assert m["si_sdri"][1] == pytest.approx(-m["si_sdr_mixture"][1], abs=1e-12)


def test_sisdri_of_mixture_is_zero():
    _, refs = random_case(9, batch=1, n_src=2)
    refs = refs[0] * np.array([[1.0], [0.5]])
    mix = refs.sum(axis=0)
    m = separation_metrics(np.stack([mix, mix]), refs, mix)
    np.testing.assert_allclose(m["si_sdri"], 0.0, atol=1e-12)
    # random references are nearly orthogonal: SI-SDR(mix, s_j) ≈ 10 log10(||s_j||² / ||s_k||²)
    np.testing.assert_allclose(m["si_sdr_mixture"], [10 * np.log10(1 / 0.25), 10 * np.log10(0.25)],
                               atol=0.5)
    assert np.all(np.isnan(separation_metrics(np.stack([mix, mix]), refs)["si_sdri"]))


def test_perfect_estimate_is_capped_not_infinite():
    _, refs = random_case(10, batch=1, n_src=2)
    m = separation_metrics(refs[0] * 3.0, refs[0])
    assert np.all(np.isfinite(m["si_sdr"])) and np.all(m["si_sdr"] > 100)


# --- stats ---------------------------------------------------------------------------------------

def test_mean_ci_matches_t_interval_and_covers():
    x = np.array([1.0, 2.0, 4.0, 3.5, np.nan, 2.2])
    mean, half = mean_ci(x, 0.95)
    lo, hi = stats.t.interval(0.95, df=4, loc=np.nanmean(x), scale=stats.sem(x[np.isfinite(x)]))
    assert mean == pytest.approx(np.nanmean(x))
    assert mean - half == pytest.approx(lo) and mean + half == pytest.approx(hi)
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(400):
        ci = mean_ci(rng.normal(5.0, 2.0, 20))
        covered.append(ci.lo <= 5.0 <= ci.hi)
    assert 0.91 <= np.mean(covered) <= 0.99
    assert np.isnan(mean_ci([]).mean) and np.isnan(mean_ci([3.0]).half_width)
    assert mean_ci([2.0, 2.0]).half_width == 0


def test_pearson():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50)
    y = 2 * x + rng.standard_normal(50)
    r, p = pearson(x, y)
    ref = stats.pearsonr(x, y)
    assert r == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue)
    x[3] = np.nan
    assert pearson(x, y).r == pytest.approx(
        stats.pearsonr(np.delete(x, 3), np.delete(y, 3)).statistic)
    assert all(np.isnan(pearson([1.0, 2.0], [3.0, 1.0])))
    assert all(np.isnan(pearson([1.0, 1.0, 1.0], [3.0, 1.0, 2.0])))
