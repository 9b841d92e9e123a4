"""Loss weights w(α) = C(α)·|X|/Σ|X| (paper §2.3, eq. 7), alone and as the stream builds them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bootsep.config import parse_config
from bootsep.errors import BootsepError
from bootsep.pipeline.confidence import check_alpha
from bootsep.train.conditions import Condition, conditions
from bootsep.train.dataset import ShardStream
from bootsep.train.inputs import shard_groups
from bootsep.train.labels import labels_to_onehot
from bootsep.train.loss import normalised_batch_loss, weighted_dc_loss
from bootsep.train.synthetic import TINY_STFT, write_synthetic_split
from bootsep.train.weights import (
    confidence_map,
    linear_in_mass,
    magnitude_from_db,
    magnitude_share,
    training_weights,
)


def _utterance(seed=0, T=40, F=17):
    rng = np.random.default_rng(seed)
    logmag = rng.uniform(-80.0, 10.0, (T, F)).astype(np.float32)
    c_post = rng.uniform(0.0, 1.0, (T, F)).astype(np.float32)
    c_post[0, :3] = [0.0, 1.0, 0.5]
    return logmag, float(rng.uniform(0.1, 1)), float(rng.uniform(0.1, 1)), c_post


def test_magnitude_from_db_inverts_eq2():
    mag = np.array([[1e-4, 0.5, 1.0, 3.0]], np.float32)
    np.testing.assert_allclose(magnitude_from_db(20 * np.log10(mag)), mag, rtol=1e-5)


def test_magnitude_share_sums_to_one_and_zero_input():
    logmag, *_ = _utterance()
    share = magnitude_share(magnitude_from_db(logmag))
    assert share.dtype == np.float32 and (share >= 0).all()
    assert share.sum(dtype=np.float64) == pytest.approx(1.0, rel=1e-5)
    assert not magnitude_share(np.zeros((3, 4), np.float32)).any()


def test_alpha_zero_is_pure_magnitude_weighting():
    logmag, c_cl, c_jsd, c_post = _utterance(1)
    mag = magnitude_from_db(logmag)
    np.testing.assert_array_equal(training_weights(mag, 0.0, c_cl, c_jsd, c_post),
                                  magnitude_share(mag))
    np.testing.assert_array_equal(training_weights(mag, 0.0), magnitude_share(mag))
    assert confidence_map(c_cl, c_jsd, c_post, 0.0) is None


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_weights_are_confidence_times_share_within_0_1_share(alpha):
    logmag, c_cl, c_jsd, c_post = _utterance(2)
    mag = magnitude_from_db(logmag)
    share = magnitude_share(mag)
    w = training_weights(mag, alpha, c_cl, c_jsd, c_post)
    want = (np.float64(c_cl) * c_jsd * c_post.astype(np.float64)) ** alpha * share
    np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-12)
    assert (w >= 0).all() and (w <= share * (1 + 1e-6)).all()
    assert w[0, 0] == 0.0                       # C_post = 0 drops the bin


def test_quantity_falls_as_alpha_grows():
    logmag, c_cl, c_jsd, c_post = _utterance(3)
    mag = magnitude_from_db(logmag)
    totals = [training_weights(mag, a, c_cl, c_jsd, c_post).sum() for a in (0, 0.5, 1, 2)]
    assert totals[0] == pytest.approx(1.0, rel=1e-5)
    assert all(a > b for a, b in zip(totals, totals[1:]))


@pytest.mark.parametrize("alpha", [-0.5, float("nan"), float("inf")])
def test_bad_alpha_is_an_error(alpha):
    logmag, c_cl, c_jsd, c_post = _utterance(4)
    with pytest.raises(BootsepError, match="alpha"):
        training_weights(magnitude_from_db(logmag), alpha, c_cl, c_jsd, c_post)


@pytest.mark.parametrize("alpha", [-1, float("inf"), float("nan"), "x", None, True])
def test_bad_alpha_in_params_names_the_key(alpha):
    """The α of eq. 7 is checked where params are read and where weights are built."""
    def load(a):
        entry = {"teacher": "paper", "alpha": a, "fraction": 1.0}
        data = {"train_conditions": {"gt": {}, "spatial": {"a1": entry}, "rounds": {}}}
        return parse_config(data, ["train_conditions"], where="p.yaml")
    with pytest.raises(BootsepError, match=r"^p\.yaml: train_conditions\.spatial\.a1\.alpha is "):
        load(alpha)
    if alpha is not True and not isinstance(alpha, (str, type(None))):
        with pytest.raises(BootsepError, match="confidence exponent of eq. 7"):
            check_alpha(alpha)
    assert check_alpha(2) == 2.0 and check_alpha(np.float32(0.5)) == 0.5
    assert conditions(load(0.5).train_conditions)[0].alpha == 0.5


def test_stream_weights_per_cropped_example(tmp_path):
    """In the stream, the magnitude share is taken over each (cropped) example."""
    write_synthetic_split(tmp_path, "train", 12, frames=(20, 50), seed=3)
    for cond in (Condition("gt", "gt"), *(Condition(f"alpha_{a:g}", "spatial", a, teacher="paper")
                                          for a in (0.0, 1.0, 2.0))):
        stream = ShardStream(shard_groups(cond, "train", tmp_path), cond, TINY_STFT, seed=0,
                             max_frames=25, shuffle_buffer=4)
        for ex in stream:
            share = magnitude_share(magnitude_from_db(ex["features"]))
            assert ex["weights"].shape == ex["features"].shape and ex["weights"].dtype == np.float32
            if cond.alpha == 0:
                np.testing.assert_array_equal(ex["weights"], share)
            else:
                assert (ex["weights"] >= 0).all() and (ex["weights"] <= share * (1 + 1e-6)).all()
                assert ex["weights"].sum() < 1.0


def _pair_loss(V: np.ndarray, Y: np.ndarray, w: np.ndarray) -> float:
    """Eq. 9 literally for one utterance, O(N²): Σ_ij w_i w_j (<v_i, v_j> - <y_i, y_j>)²."""
    diff = V @ V.T - Y @ Y.T
    return float((np.outer(w, w) * diff ** 2).sum())


def test_linear_in_mass_keeps_the_bins_relative_weights_and_its_mass_is_the_root():
    rng = np.random.default_rng(4)
    w = (rng.uniform(size=(30, 17)) * 0.01).astype(np.float32)
    w[0, :4] = 0.0
    out = linear_in_mass(w)
    assert out.dtype == np.float32 and out.shape == w.shape
    np.testing.assert_allclose(out / out.sum(), w / w.sum(), rtol=1e-5)
    assert out.sum(dtype=np.float64) == pytest.approx(np.sqrt(w.sum(dtype=np.float64)), rel=1e-5)
    np.testing.assert_array_equal(linear_in_mass(np.zeros((3, 17), np.float32)), 0.0)


def test_linear_weighting_makes_an_utterances_loss_scale_with_its_mass():
    """Eq. 8 of weights c·w is c² times that of w (the pair weights w_i w_j); after
    linear_in_mass it is c times (brute force over the bin pairs)."""
    rng = np.random.default_rng(5)
    N, D = 60, 5
    V = rng.normal(size=(N, D))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    Y = np.eye(2)[rng.integers(0, 2, N)]
    w = rng.uniform(size=N) * 0.02
    base = _pair_loss(V, Y, w)
    for c in (0.1, 0.5, 3.0):
        assert _pair_loss(V, Y, c * w) == pytest.approx(c ** 2 * base, rel=1e-10)
        lin = linear_in_mass(c * w).astype(np.float64)
        assert _pair_loss(V, Y, lin) == pytest.approx(c * _pair_loss(V, Y, linear_in_mass(w)
                                                                     .astype(np.float64)),
                                                      rel=1e-5)


def test_linear_weighting_batch_loss_is_each_utterances_loss_over_its_mass():
    """The trainer's batch loss Σ L_b / Σ (Σw_b)² with the linear weights equals
    Σ_b L_b(w_b) / m_b / Σ_b m_b with the eq. 7 weights w_b of mass m_b (brute-force oracle):
    an utterance counts with its confidence mass, not its square, and a global scale of the
    weights still drops out."""
    rng = np.random.default_rng(6)
    B, N, D = 4, 40, 6
    V = rng.normal(size=(B, N, D))
    V /= np.linalg.norm(V, axis=-1, keepdims=True)
    labels = rng.integers(0, 2, (B, N))
    Y = np.eye(2)[labels]
    w = rng.uniform(size=(B, N)) * rng.uniform(0.01, 0.3, (B, 1))     # masses far apart
    mass = w.sum(axis=1)
    want = sum(_pair_loss(V[b], Y[b], w[b]) / mass[b] for b in range(B)) / mass.sum()
    for scale in (1.0, 1e-3):
        lin = np.stack([linear_in_mass((scale * w[b]).astype(np.float32)) for b in range(B)])
        Vt, lt = torch.from_numpy(V), torch.from_numpy(lin).to(torch.float64)
        got = normalised_batch_loss(weighted_dc_loss(Vt, labels_to_onehot(
            torch.from_numpy(labels), 2, dtype=torch.float64), lt), lt)
        assert float(got) == pytest.approx(want, rel=1e-5)


def test_stream_linear_weighting_rescales_confidence_weighted_examples_only(tmp_path):
    write_synthetic_split(tmp_path, "train", 12, frames=(20, 50), seed=3)
    for cond in (Condition("gt", "gt"), Condition("alpha_0", "spatial", 0.0, teacher="paper"),
                 Condition("alpha_1", "spatial", 1.0, teacher="paper")):
        quad, lin = (list(ShardStream(shard_groups(cond, "train", tmp_path), cond, TINY_STFT,
                                      seed=0, max_frames=25, shuffle_buffer=4,
                                      utterance_weighting=weighting))
                     for weighting in ("quadratic", "linear"))
        assert [e["id"] for e in quad] == [e["id"] for e in lin]
        for q, li in zip(quad, lin):
            np.testing.assert_array_equal(q["features"], li["features"])
            np.testing.assert_array_equal(q["labels"], li["labels"])
            if cond.alpha == 0:          # ground truth and alpha = 0: Σw = 1, left as they are
                np.testing.assert_array_equal(q["weights"], li["weights"])
            else:
                np.testing.assert_array_equal(li["weights"], linear_in_mass(q["weights"]))
                assert li["weights"].sum() > q["weights"].sum()
    with pytest.raises(ValueError, match="utterance_weighting 'cubic'"):
        ShardStream([], Condition("gt", "gt"), TINY_STFT, seed=0, utterance_weighting="cubic")
