"""The self-training prior (evaluate/relabel.py): the student's masks, soft or binary, as
per-bin source probabilities for the delay teacher's product of experts; keep_confident's
threshold against a brute-force search, and its choice between keep scores."""

from pathlib import Path

import numpy as np
import pytest

from bootsep.errors import BootsepError
from bootsep.evaluate.inference import soft_masks
from bootsep.evaluate.relabel import (
    KEEP_SCORES,
    KeepRule,
    RelabelSources,
    choose_keep,
    keep_scores,
    keep_threshold,
    student_prior,
)
from bootsep.pipeline.storage.layout import same_shard_in


def test_student_prior_mixes_the_masks_with_the_floor_and_pads_uniformly():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(5, 4, 3))
    emb /= np.linalg.norm(emb, axis=-1, keepdims=True)
    soft = soft_masks(emb, rng.normal(size=(2, 3)), 2.0)                   # (K, T, F)
    binary = (soft >= 0.5).astype(np.float32)
    binary[1] = 1.0 - binary[0]
    prior = student_prior([soft, binary[:, :3]], 0.02, num_frames=6)       # (B, T, F, K)
    assert prior.shape == (2, 6, 4, 2)
    np.testing.assert_allclose(prior.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(prior[0, :5], 0.98 * np.moveaxis(soft, 0, -1) + 0.01, atol=1e-6)
    np.testing.assert_allclose(prior[1, :3], 0.98 * np.moveaxis(binary[:, :3], 0, -1) + 0.01)
    np.testing.assert_array_equal(prior[0, 5:], 0.5)                      # padding: uniform
    np.testing.assert_array_equal(prior[1, 3:], 0.5)
    assert prior.min() > 0.0                          # a floor > 0 never rules a source out


def _brute_force_keep(conf, acc_t, acc_r):
    """Every threshold among the confidences (and inf): mean switched accuracy; the best, the
    fewest mixtures kept among ties."""
    best = (float(np.mean(acc_r)), 0, float("inf"))
    for t in sorted(set(conf.tolist()), reverse=True):
        keep = conf >= t
        mean = float(np.mean(np.where(keep, acc_t, acc_r)))
        if mean > best[0] + 1e-12:
            best = (mean, int(keep.sum()), t)
    return best


def test_keep_threshold_is_the_best_cut_by_brute_force():
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = int(rng.integers(1, 12))
        conf = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], n) if trial % 2 else rng.uniform(size=n)
        acc_t, acc_r = rng.uniform(0.5, 1.0, n), rng.uniform(0.5, 1.0, n)
        t, mean, kept = keep_threshold(conf, acc_t, acc_r)
        want_mean, want_kept, want_t = _brute_force_keep(conf, acc_t, acc_r)
        assert mean == pytest.approx(want_mean) and kept == want_kept and t == want_t
        assert kept == int((conf >= t).sum())
        # the switched labels are never worse than relabelling every mixture
        assert mean >= acc_r.mean() - 1e-12


def test_keep_threshold_keeps_the_confident_mixtures_where_the_teacher_is_better():
    conf = np.array([0.9, 0.8, 0.2, 0.1])
    t, mean, kept = keep_threshold(conf, np.array([0.95, 0.9, 0.6, 0.5]),
                                   np.array([0.7, 0.8, 0.9, 0.9]))
    assert (t, kept) == (0.8, 2) and mean == pytest.approx((0.95 + 0.9 + 0.9 + 0.9) / 4)
    t, mean, kept = keep_threshold(conf, np.full(4, 0.5), np.full(4, 0.9))    # never better
    assert (t, kept) == (float("inf"), 0) and mean == pytest.approx(0.9)
    with pytest.raises(ValueError):
        keep_threshold(conf, np.ones(3), np.ones(4))


def test_keep_scores_are_the_confidence_and_the_fit_terms_gain():
    teacher = {"mean_confidence": np.array([0.2, 0.05]), "c_jsd": np.array([0.6, 0.3])}
    relabelled = {"mean_confidence": np.array([0.1, 0.2]), "c_jsd": np.array([0.5, 0.4])}
    scores = keep_scores(teacher, relabelled)
    assert set(scores) == set(KEEP_SCORES)
    np.testing.assert_array_equal(scores["confidence"], [0.2, 0.05])
    np.testing.assert_allclose(scores["fit_gain"], [0.1, -0.1])
    assert set(keep_scores(teacher)) == {"confidence"}           # no refit: confidence only


def test_choose_keep_takes_the_score_whose_cut_is_best_on_valid():
    """Brute force over the scores: the chosen one's cut reaches the best mean switched
    accuracy of any score's; ties go to the teacher's confidence (no refit needed)."""
    rng = np.random.default_rng(2)
    for _ in range(100):
        n = int(rng.integers(1, 10))
        acc_t, acc_r = rng.uniform(0.5, 1.0, n), rng.uniform(0.5, 1.0, n)
        scores = {"confidence": rng.uniform(size=n), "fit_gain": rng.normal(size=n)}
        name, t, mean, kept = choose_keep(scores, acc_t, acc_r)
        best = {k: _brute_force_keep(v, acc_t, acc_r) for k, v in scores.items()}
        assert mean == pytest.approx(max(b[0] for b in best.values()))
        assert (t, kept) == (best[name][2], best[name][1])
        if best["confidence"][0] >= best["fit_gain"][0] - 1e-12:
            assert name == "confidence"
    # the fit term's gain separates where the confidence cannot
    acc_t, acc_r = np.array([0.9, 0.6, 0.9, 0.6]), np.array([0.7, 0.8, 0.7, 0.8])
    scores = {"confidence": np.array([0.5, 0.5, 0.1, 0.1]),
              "fit_gain": np.array([0.2, -0.1, 0.3, -0.2])}
    assert choose_keep(scores, acc_t, acc_r)[:2] == ("fit_gain", 0.2)
    with pytest.raises(ValueError):
        choose_keep({}, acc_t, acc_r)


def _fake_fit(rng, lengths, T, F=5, K=2):
    """A delay teacher's padded fit of ``len(lengths)`` mixtures: the arrays fit_teacher gives."""
    B = len(lengths)
    post = rng.dirichlet(np.ones(K), size=(B, T, F)).astype(np.float32)
    frames = {"posteriors": post, "labels": post.argmax(-1).astype(np.uint8),
              "fit_mask": rng.random((B, T, F)) > 0.3,
              "outlier_posterior": rng.random((B, T, F)).astype(np.float32)}
    utterances = {"delays": rng.normal(size=(B, K, 1)), "outlier_prior": rng.random(B),
                  "degenerate": np.zeros(B, bool), "converged": np.ones(B, bool),
                  "fit_bins": frames["fit_mask"].sum(axis=(1, 2))}
    return frames, utterances


def test_keep_rule_and_sources():
    """A keep rule names a known score (a one-line error otherwise) and keeps only at a finite
    threshold; the sources name each folder's shard of an stft shard."""
    assert not KeepRule().keeps and KeepRule(0.3, "fit_gain").keeps
    with pytest.raises(BootsepError, match="unknown keep_score 'median'"):
        KeepRule(0.3, "median")
    sources = RelabelSources(teacher_spatial="shards/spatial/t/valid")
    assert same_shard_in(sources.teacher_spatial, "shards/stft/valid/shard-00003.h5") == \
        Path("shards/spatial/t/valid/shard-00003.h5")


def test_stored_fit_reads_back_the_rows_of_a_written_spatial_shard(tmp_path):
    """A copy of a teacher's fit (stored_fit) is what was written, in the storage dtypes,
    padded to the batch's frames, for any subset of rows; merged with a refit (float32) it
    takes the wider dtype and sums the info; a shard of other utterances is refused."""
    from bootsep.errors import BootsepError
    from bootsep.evaluate.relabel import merge_fits, stored_fit
    from bootsep.pipeline.jobs.spatial_shard import write_spatial_shard
    from bootsep.pipeline.stft import StftConfig

    rng = np.random.default_rng(4)
    cfg, lengths, T = StftConfig(win_length=8, hop_length=2), np.array([6, 3, 5, 4]), 7
    frames, utterances = _fake_fit(rng, lengths, T)
    ids = [f"m{i}" for i in range(4)]
    write_spatial_shard(tmp_path / "shard-00000.h5", cfg, {}, "test", 0, ids, lengths, frames,
                        utterances, {})
    rows = np.array([3, 1])
    got, got_u, info = stored_fit(tmp_path / "shard-00000.h5", cfg, ids, rows, T)
    assert set(got) == set(frames) and set(got_u) == set(utterances)
    assert info == {"outlier_prior_sum": pytest.approx(utterances["outlier_prior"][rows].sum())}
    for j, r in enumerate(rows):
        n = lengths[r]
        assert got["posteriors"].shape == (2, T, 5, 2) and got["posteriors"].dtype == np.float16
        np.testing.assert_array_equal(got["posteriors"][j, :n],
                                      frames["posteriors"][r, :n].astype(np.float16))
        for key in ("labels", "fit_mask"):
            np.testing.assert_array_equal(got[key][j, :n], frames[key][r, :n])
    np.testing.assert_array_equal(got_u["delays"], utterances["delays"][rows])

    refit, refit_u = _fake_fit(rng, lengths[[0, 2]], T)
    merged, merged_u, merged_info = merge_fits(
        [(rows, (got, got_u, info)), (np.array([0, 2]), (refit, refit_u, {"outlier_prior_sum":
                                                                          1.0, "other": 2}))], 4)
    assert merged["posteriors"].dtype == np.float32
    np.testing.assert_array_equal(merged["posteriors"][2], refit["posteriors"][1])
    np.testing.assert_array_equal(merged["posteriors"][3], got["posteriors"][0])
    np.testing.assert_array_equal(merged_u["delays"][[3, 1, 0, 2]],
                                  np.concatenate([got_u["delays"], refit_u["delays"]]))
    assert merged_info == {"outlier_prior_sum": pytest.approx(info["outlier_prior_sum"] + 1.0),
                           "other": 2}
    with pytest.raises(BootsepError, match="utterances differ"):
        stored_fit(tmp_path / "shard-00000.h5", cfg, ids[::-1], rows, T)
