"""Label quality (chi-squared partition distance, paper §3.4) and quantity."""

import numpy as np
import pytest

from bootsep.evaluate.quality import (
    band_accuracy,
    contingency,
    label_quantity,
    mean_quality,
    mixture_label_accuracy,
    mixture_label_stats,
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
    renamed = np.array(["a", "b", "c"])[y]
    assert partition_quality(renamed, y_hat + 10, w) == pytest.approx(q, abs=1e-12)
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
    # n_rs = [[3, 1], [1, 3]] (unit weights): Σ = 2 (9/16 + 1/16) = 1.25, d = 2 − 1.25,
    # quality = 0.25 / 1
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    y_hat = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    np.testing.assert_allclose(contingency(y, y_hat, np.ones(8)), [[3, 1], [1, 3]])
    assert partition_quality(y, y_hat, np.ones(8)) == pytest.approx(0.25)


def test_batched_equals_loop_and_edge_cases(rng):
    y, y_hat, w = rng.integers(0, 2, (5, 300)), rng.integers(0, 2, (5, 300)), rng.random((5, 300))
    y_hat[0] = y[0]
    batched = partition_quality(y, y_hat, w)
    assert batched.shape == (5,)
    np.testing.assert_allclose(batched,
                               [partition_quality(a, b, c) for a, b, c in zip(y, y_hat, w)])
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


def _quality_by_table(y, y_hat, w):
    """The module doc's formula with a contingency table built by a Python loop (no numpy
    bincount): n_rs, n_r, n_s over clusters of positive weight, Σ n_rs²/(n_r n_s), normalised."""
    n_rs: dict = {}
    for a, b, wi in zip(y.tolist(), y_hat.tolist(), w.tolist()):
        n_rs[a, b] = n_rs.get((a, b), 0.0) + wi
    n_r: dict = {}
    n_s: dict = {}
    for (a, b), v in n_rs.items():
        n_r[a] = n_r.get(a, 0.0) + v
        n_s[b] = n_s.get(b, 0.0) + v
    sig = sum(v * v / (n_r[a] * n_s[b]) for (a, b), v in n_rs.items() if v > 0)
    R = sum(v > 0 for v in n_r.values())
    S = sum(v > 0 for v in n_s.values())
    return (sig - 1.0) / ((R + S) / 2 - 1), (R + S) / 2 - sig


def _quality_by_projections(y, y_hat, w):
    """Bach & Jordan's definition with explicit matrices: Y (N×R) and Ŷ (N×S) indicator
    matrices of the clusters, rows scaled by √w, columns normalised (zero-weight clusters
    dropped); d_χ² = ‖Π_Y − Π_Ŷ‖²_F / 2 with Π = Y Yᵀ; quality = 1 − d_χ² / (R/2 + S/2 − 1)."""
    def projection(labels):
        cols = (labels[:, None] == np.unique(labels)[None, :]) * np.sqrt(w)[:, None]
        norms = np.linalg.norm(cols, axis=0)
        cols = cols[:, norms > 0] / norms[norms > 0]
        return cols @ cols.T, cols.shape[1]
    p_y, R = projection(y)
    p_hat, S = projection(y_hat)
    d = np.sum((p_y - p_hat) ** 2) / 2
    return 1 - d / (R / 2 + S / 2 - 1), d


def test_unequal_cluster_counts_and_weights_against_formula_and_projections(rng):
    # R = 4 true clusters (label 3 only on zero-weight bins, so R counts 3), S = 2 estimated
    # (labels 10/20; 30 only on zero-weight bins). Catches: R, S counted from the label
    # values instead of the positive-weight clusters; normalising by K - 1 = max(R, S) - 1
    # or min(R, S) - 1 instead of (R + S)/2 - 1; weighting the label matrices by w instead
    # of √w (n_rs of w²); an unweighted table.
    n = 120
    y = rng.integers(0, 3, n)
    y_hat = np.where(rng.random(n) < 0.8, np.where(y == 0, 10, 20), rng.choice([10, 20], n))
    w = rng.gamma(0.5, 1.0, n) * (1 + 5 * (y == 2))        # heavy-tailed, cluster-dependent
    silent = rng.random(n) < 0.15
    w[silent] = 0.0
    y[silent & (rng.random(n) < 0.5)] = 3
    y_hat[silent & (rng.random(n) < 0.5)] = 30
    want, want_d = _quality_by_table(y, y_hat, w)
    brute, brute_d = _quality_by_projections(y, y_hat, w)
    assert brute == pytest.approx(want, abs=1e-12) and brute_d == pytest.approx(want_d, abs=1e-12)
    assert partition_quality(y, y_hat, w) == pytest.approx(want, abs=1e-12)
    d_max = (3 + 2) / 2 - 1
    assert (1 - partition_quality(y, y_hat, w)) * d_max == pytest.approx(want_d, abs=1e-12)
    assert partition_quality(y_hat, y, w) == pytest.approx(want, abs=1e-12)     # S x R
    assert 0.05 < want < 0.95                                                   # not an edge
    # the wrong normalisations and weightings really differ here
    sig = 1 + want * ((3 + 2) / 2 - 1)
    assert abs((sig - 1) / (3 - 1) - want) > 0.01 and abs((sig - 1) / (2 - 1) - want) > 0.01
    assert abs(_quality_by_table(y, y_hat, w ** 2)[0] - want) > 0.01
    assert abs(_quality_by_table(y, y_hat, (w > 0).astype(float))[0] - want) > 0.01
    # batched, rows with different R and S
    ys = np.stack([y, np.where(y == 3, 3, y % 2), y])
    hats = np.stack([y_hat, y_hat, np.where(y_hat == 30, 30, rng.integers(0, 4, n))])
    ws = np.stack([w, w[::-1], w])
    brute_rows = [_quality_by_projections(a, b, c)[0] for a, b, c in zip(ys, hats, ws)]
    np.testing.assert_allclose(partition_quality(ys, hats, ws), brute_rows, atol=1e-12)


ALPHAS = {"a0": 0.0, "a05": 0.5, "a1": 1.0, "a2": 2.0}


def _label_mixture(rng, T=30, F=17):
    """One mixture as the labels stage reads it: dB magnitude, source magnitudes (T, S, F),
    confidences below 1, and the ideal binary labels."""
    source_mag = rng.gamma(1.0, 1.0, (T, 2, F)).astype(np.float32)
    logmag = (20 * np.log10(source_mag.sum(axis=1) + 1e-3)).astype(np.float32)
    c_post = rng.uniform(0.05, 0.95, (T, F)).astype(np.float32)
    return logmag, source_mag, c_post, source_mag.argmax(axis=1)


def test_mixture_label_stats_quantity_by_eq7_and_falls_with_alpha(rng):
    # Σw(α) = Σ_i (C_cl C_JSD C_post,i)^α |X_i| / Σ|X| (eq. 7 times the magnitude share),
    # computed here in float64 from the dB input. Catches: α applied to C_post only, weights not
    # normalised per mixture (then α = 0, the gt weighting, would not sum to 1), a quantity
    # that grows with α (C^(1/α)), and confidences of another mixture/bin order.
    logmag, source_mag, c_post, truth = _label_mixture(rng)
    c_cl, c_jsd = 0.8, 0.6
    labels = np.where(rng.random(truth.shape) < 0.3, 1 - truth, truth).astype(np.uint8)
    stats = mixture_label_stats(logmag, source_mag, labels, c_cl, c_jsd, c_post, ALPHAS)
    assert set(stats) == set(ALPHAS)
    mag = 10.0 ** (logmag.astype(np.float64) / 20)
    conf = c_cl * c_jsd * c_post.astype(np.float64)
    for name, alpha in ALPHAS.items():
        want = float(np.sum(conf ** alpha * mag) / mag.sum())
        assert stats[name][0] == pytest.approx(want, rel=1e-5), name
    assert stats["a0"][0] == pytest.approx(1.0, abs=1e-6)          # the gt weights: 1 per mixture
    sums = [stats[n][0] for n in ("a0", "a05", "a1", "a2")]
    assert all(a > b for a, b in zip(sums, sums[1:])), sums
    # the quality is partition_quality of the ideal labels vs these, under w(α)
    w1 = conf * mag / mag.sum()
    assert stats["a1"][1] == pytest.approx(partition_quality(truth.ravel(), labels.ravel(),
                                                             w1.ravel()), abs=1e-5)
    assert 0.05 < stats["a1"][1] < 0.95


def test_mixture_label_stats_quality_of_perfect_labels_is_one(rng):
    # The ideal binary labels (argmax over sources), and the same partition with the names
    # swapped, have quality 1 for every α. Catches the truth taken over the wrong axis of
    # source_mag (T, S, F) (e.g. argmax over frequency) or labels compared bin-misaligned.
    logmag, source_mag, c_post, truth = _label_mixture(rng)
    for labels in (truth, 1 - truth):
        stats = mixture_label_stats(logmag, source_mag, labels.astype(np.uint8), 0.9, 0.7,
                                    c_post, ALPHAS)
        for name, (_, q) in stats.items():
            assert q == pytest.approx(1.0, abs=1e-9), name


def test_band_accuracy_resolves_the_permutation_once_per_mixture():
    """A band whose labels are inverted against the rest of the mixture scores 0 there (a
    per-band permutation would hide it: it would score 1); swapping every label changes
    nothing; weights count, not bin numbers."""
    rng = np.random.default_rng(0)
    T, F = 30, 8
    band = np.repeat(np.arange(4), 2)                       # 4 bands of 2 bins
    truth = rng.integers(0, 2, (T, F))
    est = truth.copy()
    est[:, band == 3] = 1 - est[:, band == 3]               # the top band inverted
    w = rng.uniform(0.5, 1.5, (T, F))
    correct, total = band_accuracy(truth, est, w, band, 4, 2)
    np.testing.assert_allclose(correct / total, [1, 1, 1, 0])
    np.testing.assert_allclose(total, [w[:, band == b].sum() for b in range(4)])
    swapped = band_accuracy(truth, 1 - est, w, band, 4, 2)
    np.testing.assert_allclose(swapped[0], correct)
    # the majority decides the permutation: with 3 of 4 bands inverted, the other one is wrong
    est3 = np.where(band[None, :] < 3, 1 - truth, truth)
    c3, t3 = band_accuracy(truth, est3, w, band, 4, 2)
    np.testing.assert_allclose(c3 / t3, [1, 1, 1, 0])
    # zero weight: no contribution; brute force against a loop for K = 3
    truth3, est3 = rng.integers(0, 3, (T, F)), rng.integers(0, 3, (T, F))
    w3 = w * (rng.random((T, F)) < 0.7)
    got_c, got_t = band_accuracy(truth3, est3, w3, band, 4, 3)
    import itertools
    perms = list(itertools.permutations(range(3)))
    score = [sum(w3[t, f] for t in range(T) for f in range(F) if perm[est3[t, f]] == truth3[t, f])
             for perm in perms]
    perm = perms[int(np.argmax(score))]
    want = [sum(w3[t, f] for t in range(T) for f in range(F)
                if band[f] == b and perm[est3[t, f]] == truth3[t, f]) for b in range(4)]
    np.testing.assert_allclose(got_c, want)


def test_mixture_label_accuracy_against_a_loop_over_bins(rng):
    # keep_confident's choice (stages/s6_relabel.py): per mixture, the |X|-weighted share of
    # bins whose label is the loudest source's, under the better of the two labellings
    T, F = 7, 5
    source_mag = rng.uniform(0.0, 1.0, (T, 2, F)).astype(np.float32)
    logmag = rng.uniform(-40.0, 0.0, (T, F)).astype(np.float32)
    labels = rng.integers(0, 2, (T, F))
    w = 10.0 ** (logmag.astype(np.float64) / 20.0)
    best = 0.0
    for perm in ((0, 1), (1, 0)):
        hit = sum(w[t, f] for t in range(T) for f in range(F)
                  if perm[labels[t, f]] == int(np.argmax(source_mag[t, :, f])))
        best = max(best, hit / w.sum())
    assert mixture_label_accuracy(source_mag, logmag, labels) == pytest.approx(best, rel=1e-5)
    assert mixture_label_accuracy(source_mag, logmag, 1 - labels) == pytest.approx(best, rel=1e-5)
    assert np.isnan(mixture_label_accuracy(source_mag, np.full((T, F), -np.inf), labels))


def _ranks(x):
    """Average ranks (1-based; ties share the mean of their positions), by plain counting."""
    x = np.asarray(x, np.float64)
    return np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2.0 for v in x])


def test_confidence_ranking_is_the_pearson_correlation_of_average_ranks():
    """Spearman's ρ (scipy) against the definition: Pearson's r of the average ranks, ties
    included; invariant to any increasing transform of either side; NaN accuracies (silent
    mixtures) left out; undefined (None) for constant sides or fewer than 3 mixtures."""
    from bootsep.evaluate.quality import confidence_ranking
    rng = np.random.default_rng(7)
    for trial in range(50):
        n = int(rng.integers(3, 30))
        conf = rng.choice([0.1, 0.2, 0.5], n) if trial % 3 == 0 else rng.uniform(size=n)
        acc = 0.5 + 0.5 * np.clip(conf + rng.normal(0, 0.3, n), 0, 1)
        if np.ptp(conf) == 0 or np.ptp(acc) == 0:
            continue
        want = np.corrcoef(_ranks(conf), _ranks(acc))[0, 1]
        got = confidence_ranking(conf, acc)
        assert got == pytest.approx(want, abs=1e-12)
        assert confidence_ranking(np.exp(3 * conf), acc ** 5) == pytest.approx(got, abs=1e-12)
        assert confidence_ranking(conf, -acc) == pytest.approx(-got, abs=1e-12)
    conf, acc = np.array([0.9, 0.1, 0.5, 0.7]), np.array([0.95, 0.6, np.nan, 0.8])
    assert confidence_ranking(conf, acc) == pytest.approx(1.0)      # the NaN row dropped
    assert confidence_ranking(np.ones(4), np.arange(4.0)) is None
    assert confidence_ranking(np.arange(2.0), np.arange(2.0)) is None
    with pytest.raises(ValueError):
        confidence_ranking(np.ones(3), np.ones(4))
