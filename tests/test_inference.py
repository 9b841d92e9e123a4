"""K-means masks of the deep-clustering model (evaluate/inference.py): the soft masks against a
brute-force softmax, their limits (binary as beta grows, 1/K at 0), the centre permutation,
magnitude-weighted K-means against K-means on replicated points, and model_masks' modes on a
tiny random network."""

import math

import numpy as np
import pytest

from bootsep.evaluate.inference import (
    KMeansMasks,
    active_bins,
    bin_weights,
    binary_masks,
    embed,
    kmeans_assign,
    kmeans_fit,
    model_masks,
    soft_masks,
)
from bootsep.train.model import ModelConfig, init_model


def unit_embeddings(rng, shape, dim):
    v = rng.normal(size=(*shape, dim))
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def brute_soft(emb, centres, beta):
    """exp(-beta |v - mu_k|^2) / sum_j exp(-beta |v - mu_j|^2), one bin at a time."""
    T, F, _ = emb.shape
    out = np.zeros((len(centres), T, F))
    for t in range(T):
        for f in range(F):
            d = [sum((float(a) - float(b)) ** 2 for a, b in zip(emb[t, f], mu)) for mu in centres]
            w = [math.exp(-beta * (x - min(d))) for x in d]
            for k, wk in enumerate(w):
                out[k, t, f] = wk / sum(w)
    return out


@pytest.mark.parametrize("beta", [0.3, 2.0, 7.5])
@pytest.mark.parametrize("k", [2, 3])
def test_soft_masks_match_a_brute_force_softmax(beta, k):
    rng = np.random.default_rng(k)
    emb = unit_embeddings(rng, (6, 5), 4)
    centres = rng.normal(size=(k, 4)) * 0.6
    got = soft_masks(emb, centres, beta)
    assert got.shape == (k, 6, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, brute_soft(emb, centres, beta), atol=1e-6)
    np.testing.assert_allclose(got.sum(0), 1.0, atol=1e-6)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_soft_masks_tend_to_the_nearest_centre_and_to_uniform():
    rng = np.random.default_rng(1)
    emb = unit_embeddings(rng, (20, 9), 5)
    centres = unit_embeddings(rng, (3,), 5)
    nearest = np.argmin(((emb[..., None, :] - centres) ** 2).sum(-1), axis=-1)
    np.testing.assert_allclose(soft_masks(emb, centres, 1e4), binary_masks(nearest, 3),
                               atol=1e-4)
    np.testing.assert_allclose(soft_masks(emb, centres, 0.0), 1.0 / 3, atol=1e-7)
    # a sharper beta moves every bin's mask towards its nearest centre
    soft, sharp = soft_masks(emb, centres, 1.0), soft_masks(emb, centres, 4.0)
    pick = np.take_along_axis(soft, nearest[None], 0), np.take_along_axis(sharp, nearest[None], 0)
    assert np.all(pick[1] >= pick[0] - 1e-7)


def test_soft_masks_follow_the_order_of_the_centres():
    rng = np.random.default_rng(2)
    emb = unit_embeddings(rng, (7, 4), 3)
    centres = rng.normal(size=(3, 3))
    perm = np.array([2, 0, 1])
    np.testing.assert_allclose(soft_masks(emb, centres[perm], 2.0),
                               soft_masks(emb, centres, 2.0)[perm], atol=1e-7)


def test_soft_masks_reject_a_negative_beta():
    with pytest.raises(ValueError, match="beta"):
        soft_masks(np.zeros((2, 2, 3)), np.zeros((2, 3)), -1.0)


def test_model_masks_binary_and_soft_agree_on_the_labels():
    cfg = ModelConfig(num_freq=17, hidden=8, num_layers=1, embedding_dim=5)
    model = init_model(cfg, seed=0)
    rng = np.random.default_rng(3)
    logmags = [rng.normal(-30, 10, size=(n, 17)).astype(np.float32) for n in (12, 9)]
    binary = model_masks(model, logmags, 2, KMeansMasks(-40.0, 0))
    soft = model_masks(model, logmags, 2, KMeansMasks(-40.0, 0, beta=2.0))
    for lm, b, s, emb in zip(logmags, binary, soft, embed(model, logmags)):
        assert b.shape == s.shape == (2, lm.shape[0], 17)
        assert set(np.unique(b)) <= {0.0, 1.0}
        np.testing.assert_allclose(s.sum(0), 1.0, atol=1e-6)
        labels, centres = kmeans_assign(emb, active_bins(lm, -40.0, 2), 2, seed=0)
        np.testing.assert_array_equal(b, binary_masks(labels, 2))
        np.testing.assert_allclose(s, soft_masks(emb, centres, 2.0), atol=1e-6)
        # the soft mask's larger component is K-means' label wherever the two are not tied
        clear = np.abs(s[0] - s[1]) > 1e-4
        np.testing.assert_array_equal(np.argmax(s, 0)[clear], labels[clear])


@pytest.mark.parametrize("batch_size", [None, 1, 2, 3])
def test_model_masks_in_length_sorted_passes_keep_the_input_order(batch_size):
    """Passes of utterances sorted by length give each utterance the masks it gets alone
    (the padded BLSTM is padding-invariant), returned in the input order."""
    cfg = ModelConfig(num_freq=17, hidden=8, num_layers=1, embedding_dim=5)
    model = init_model(cfg, seed=0)
    rng = np.random.default_rng(4)
    logmags = [rng.normal(-30, 10, size=(n, 17)).astype(np.float32) for n in (12, 5, 20, 9, 5)]
    rule = KMeansMasks(-40.0, 0, beta=2.0, weight="magnitude")
    masks = model_masks(model, logmags, 2, rule, batch_size=batch_size)
    assert [m.shape[1] for m in masks] == [12, 5, 20, 9, 5]
    for lm, m in zip(logmags, masks):
        np.testing.assert_allclose(m, model_masks(model, [lm], 2, rule)[0], atol=1e-5)


def test_magnitude_weights_are_the_bins_magnitudes_relative_to_the_loudest():
    rng = np.random.default_rng(5)
    spec = rng.normal(size=(9, 7)) + 1j * rng.normal(size=(9, 7))
    logmag = 20 * np.log10(np.abs(spec))
    w = bin_weights(logmag, "magnitude")
    np.testing.assert_allclose(w, np.abs(spec) / np.abs(spec).max(), rtol=1e-12)
    assert bin_weights(logmag, "none") is None
    with pytest.raises(ValueError, match="weight"):
        bin_weights(logmag, "power")


def test_weighted_kmeans_equals_kmeans_on_replicated_points():
    """Integer weights are K-means on each point repeated that many times (an independent
    oracle: scikit-learn's unweighted K-means), and the centres are the weighted means of
    their bins."""
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(6)
    centres = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    labels = rng.integers(0, 2, size=(10, 8))
    emb = (centres[labels] + 0.15 * rng.normal(size=(10, 8, 3))).astype(np.float32)
    weights = rng.integers(1, 5, size=(10, 8)).astype(np.float64)
    active = rng.random((10, 8)) > 0.2
    got = kmeans_fit(emb, active, 2, seed=0, weights=weights)
    repeated = np.repeat(emb[active], weights[active].astype(int), axis=0)
    ref = KMeans(n_clusters=2, n_init=1, random_state=0).fit(repeated)
    order = np.argsort(got.cluster_centers_[:, 0]), np.argsort(ref.cluster_centers_[:, 0])
    np.testing.assert_allclose(got.cluster_centers_[order[0]], ref.cluster_centers_[order[1]],
                               atol=1e-5)
    assign = got.predict(emb[active])
    w = weights[active]
    for k in range(2):
        mean = (emb[active][assign == k] * w[assign == k, None]).sum(0) / w[assign == k].sum()
        np.testing.assert_allclose(got.cluster_centers_[k], mean, atol=1e-5)


def test_magnitude_weighted_kmeans_follows_the_loud_bins():
    """Loud bins of two clusters plus a larger third group of quiet bins: unweighted K-means
    (K = 2) spends a centre on the quiet group, the magnitude-weighted one puts its centres on
    the loud clusters."""
    rng = np.random.default_rng(7)
    loud = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    emb = np.zeros((40, 6, 3), dtype=np.float32)
    logmag = np.full((40, 6), -35.0)
    emb[:10] = loud[0] + 0.05 * rng.normal(size=(10, 6, 3))
    emb[10:20] = loud[1] + 0.05 * rng.normal(size=(10, 6, 3))
    emb[20:] = np.array([0, 0, 1.0]) + 0.05 * rng.normal(size=(20, 6, 3))
    logmag[:20] = 0.0                                     # 35 dB louder than the rest
    active = active_bins(logmag, -40.0, 2)
    weighted = kmeans_fit(emb, active, 2, seed=0, weights=bin_weights(logmag, "magnitude"))
    near = np.abs(weighted.cluster_centers_[:, None] - loud[None]).max(-1).min(0)
    assert np.all(near < 0.1)                             # each loud cluster has its centre
    plain = kmeans_fit(emb, active, 2, seed=0)
    quiet = np.abs(plain.cluster_centers_ - np.array([0, 0, 1.0])).max(-1).min()
    assert quiet < 0.1                                    # the unweighted one: on the quiet group


def test_model_masks_with_equal_magnitudes_do_not_depend_on_the_weight():
    cfg = ModelConfig(num_freq=17, hidden=8, num_layers=1, embedding_dim=5)
    model = init_model(cfg, seed=0)
    flat = [np.full((n, 17), -20.0, dtype=np.float32) for n in (12, 7)]
    for beta in (None, 2.0):
        none = model_masks(model, flat, 2, KMeansMasks(-40.0, 0, beta=beta))
        mag = model_masks(model, flat, 2, KMeansMasks(-40.0, 0, beta=beta, weight="magnitude"))
        for a, b in zip(none, mag):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_kmeans_rule_reads_params_and_round_trips():
    from types import SimpleNamespace

    ev = SimpleNamespace(kmeans_threshold_db=-30, kmeans_seed=4, mask_beta=2,
                         kmeans_weight="magnitude")
    rule = KMeansMasks.from_evaluate(ev)
    assert rule == KMeansMasks(-30.0, 4, 2.0, "magnitude")
    assert KMeansMasks.from_dict(rule.as_dict()) == rule
    assert KMeansMasks.from_dict(KMeansMasks(-40.0, 0).as_dict()).beta is None
    with pytest.raises(ValueError, match="weight"):
        KMeansMasks(-40.0, 0, weight="power")
    with pytest.raises(ValueError, match="beta"):
        KMeansMasks(-40.0, 0, beta=-1.0)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_soft_masks_softmax_is_scipys_bit_for_bit(k):
    """The loop over K in soft_masks gives scipy.special.softmax's very bits (evaluation,
    relabelling and `bootsep separate` keep their outputs)."""
    from scipy.special import softmax

    from bootsep.evaluate.inference import _softmax_over_first

    x = np.random.default_rng(k).normal(size=(k, 40, 33)) * 30.0
    x[:, 0, 0] = -1e300                      # underflow everywhere in a bin: still the same
    assert np.array_equal(_softmax_over_first(x), softmax(x, axis=0), equal_nan=True)
