"""Ensemble choices of paper §3.3 (True = spatial) and the per-bin ensemble."""

import itertools

import numpy as np
import pytest

from bootsep.evaluate.ensemble import (
    KINDS,
    choose_confidence,
    choose_oracle,
    choose_random,
    confidence_threshold,
)
from bootsep.evaluate.estimates import approach_ensemble, ensemble_approach, ensemble_members
from bootsep.evaluate.perbin import align_masks, perbin_masks
from bootsep.evaluate.scoring import (
    ENSEMBLES,
    best_ensemble,
    choose_on_valid,
    ensemble_rows,
    model_ensemble_rows,
)


def test_threshold_is_validation_25th_percentile():
    valid = np.random.default_rng(0).lognormal(size=37)
    assert confidence_threshold(valid) == np.percentile(valid, 25)
    assert confidence_threshold(valid, 25) == np.percentile(valid, 25, method="linear")
    assert confidence_threshold(np.append(valid, np.nan), 40) == np.percentile(valid, 40)
    with pytest.raises(ValueError):
        confidence_threshold([np.nan])


def test_choose_confidence():
    conf = np.array([0.1, 0.5, 0.9, np.nan, 0.5])
    np.testing.assert_array_equal(choose_confidence(conf, 0.5), [False, False, True, False, False])
    valid = np.linspace(0, 1, 101)
    test = np.random.default_rng(1).random(1000)
    share = choose_confidence(test, confidence_threshold(valid)).mean()
    assert 0.7 < share < 0.8


def test_choose_random_is_seeded():
    a, b = choose_random(500, 3), choose_random(500, 3)
    assert a.dtype == bool and a.shape == (500,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, choose_random(500, 4))
    assert 0.4 < a.mean() < 0.6


def test_choose_oracle():
    s = np.array([3.0, 1.0, 2.0, np.nan, 0.0])
    m = np.array([1.0, 4.0, 2.0, 5.0, np.nan])
    np.testing.assert_array_equal(choose_oracle(s, m), [True, False, True, False, True])


def _score_rows(approach, conf, sdr):
    """per_mixture.csv-like rows (as scoring.score writes them) with given SI-SDRs."""
    return [{"split": "test", "id": f"m{i:03d}", "approach": approach, "si_sdr": float(s),
             "si_sir": float(s) + 7.0, "si_sar": float(s) + 3.0, "si_sdri": float(s) - 1.0,
             "mean_confidence": float(c), "choice": "", "permutation": "0 1"}
            for i, (c, s) in enumerate(zip(conf, sdr))]


def _ensemble_case(seed=0, m=40):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 0.4, m)
    spatial = _score_rows("spatial", conf, rng.normal(4.0, 3.0, m))
    model = _score_rows("alpha_1", conf, rng.normal(5.0, 3.0, m))
    model[3]["si_sdr"] = spatial[3]["si_sdr"]                          # a tie
    return conf, {"spatial": spatial, "alpha_1": model}


def _check_copied(out_rows, rows, name):
    """Each ensemble row is the chosen member's row of the same mixture, renamed."""
    for i, r in enumerate(out_rows):
        src = rows[r["choice"]][i]
        assert r["approach"] == name and r["id"] == src["id"]
        assert {k: v for k, v in r.items() if k not in ("approach", "choice")} == \
            {k: v for k, v in src.items() if k not in ("approach", "choice")}


def test_ensemble_rows_oracle_is_at_least_both_members():
    # Catches an oracle that compares the wrong columns or picks the worse member, rows of one
    # mixture paired with another's (misaligned zip), and a copy of only some metrics.
    conf, rows = _ensemble_case()
    out = ensemble_rows(rows, "spatial", "alpha_1", threshold=0.2, seed=1)
    assert set(out) == set(ENSEMBLES)
    oracle = out["ensemble_oracle"]
    _check_copied(oracle, rows, "ensemble_oracle")
    for r, s, m in zip(oracle, rows["spatial"], rows["alpha_1"]):
        assert r["si_sdr"] >= s["si_sdr"] and r["si_sdr"] >= m["si_sdr"]
        assert r["si_sdr"] == max(s["si_sdr"], m["si_sdr"])
    assert oracle[3]["choice"] == "spatial"                            # tie -> spatial (documented)
    assert {r["choice"] for r in oracle} == {"spatial", "alpha_1"}


def test_ensemble_rows_confidence_picks_spatial_iff_above_threshold():
    # Catches >= instead of > at the boundary (a mixture whose confidence equals the
    # threshold takes the model, as choose_confidence documents) and the inverted choice.
    conf, rows = _ensemble_case()
    threshold = float(conf[5])                                        # exactly one mixture's
    out = ensemble_rows(rows, "spatial", "alpha_1", threshold=threshold,
                        seed=1)["ensemble_confidence"]
    _check_copied(out, rows, "ensemble_confidence")
    assert [r["choice"] == "spatial" for r in out] == [bool(c > threshold) for c in conf]
    assert out[5]["choice"] == "alpha_1"                              # equal -> the model
    assert {r["choice"] for r in out} == {"spatial", "alpha_1"}


def test_ensemble_rows_random_is_seeded_and_picks_both():
    # Catches an unseeded (global RNG, clock) draw and a draw that depends on the scores or
    # confidences instead of only (number of mixtures, seed).
    conf, rows = _ensemble_case()
    a = ensemble_rows(rows, "spatial", "alpha_1", threshold=0.2, seed=7)["ensemble_random"]
    b = ensemble_rows(rows, "spatial", "alpha_1", threshold=0.2, seed=7)["ensemble_random"]
    assert a == b
    _check_copied(a, rows, "ensemble_random")
    picks = [r["choice"] for r in a]
    assert 10 <= picks.count("spatial") <= 30                         # both, about half each
    _, other_scores = _ensemble_case(seed=3)
    c = ensemble_rows(other_scores, "spatial", "alpha_1", threshold=0.35, seed=7)["ensemble_random"]
    assert [r["choice"] for r in c] == picks
    d = ensemble_rows(rows, "spatial", "alpha_1", threshold=0.2, seed=8)["ensemble_random"]
    assert [r["choice"] for r in d] != picks


def test_ensemble_rows_suffix_names_every_row():
    _, rows = _ensemble_case()
    out = ensemble_rows(rows, "spatial", "alpha_1", threshold=0.2, seed=1, suffix="@alpha_1")
    assert set(out) == {name + "@alpha_1" for name in ENSEMBLES}
    plain = ensemble_rows(rows, "spatial", "alpha_1", threshold=0.2, seed=1)
    for name in ENSEMBLES:
        assert [r["approach"] for r in out[name + "@alpha_1"]] == [name + "@alpha_1"] * 40
        assert [r["choice"] for r in out[name + "@alpha_1"]] == [r["choice"] for r in plain[name]]


def test_model_ensemble_rows_take_the_names_of_ensemble_approach():
    # each model's ensembles carry the names ensemble_approach gives them (the first model of
    # evaluate.ensemble_models unsuffixed), and choose between that model and its teacher
    _, rows = _ensemble_case()
    rows = {"spatial_t": rows["spatial"], "alpha_1": rows["alpha_1"], "m2": rows["alpha_1"]}
    models = ["alpha_1", "m2"]
    name_of = {(m, k): ensemble_approach(k, m, models) for m in models for k in KINDS}
    for m in models:
        out = model_ensemble_rows(rows, m, m, "t", 0.2, 1, name_of)
        assert set(out) == {name_of[m, k] for k in ("confidence", "random", "oracle")}
        assert {r["choice"] for r in out[name_of[m, "oracle"]]} <= {"spatial_t", m}
    # an entry 'model+teacher': named after the entry, switching between that model and teacher
    rows["spatial_u"] = rows["spatial_t"]
    entries = ["alpha_1", "m2+u"]
    name_of = {(e, k): ensemble_approach(k, e, entries) for e in entries for k in KINDS}
    out = model_ensemble_rows(rows, "m2+u", "m2", "u", 0.2, 1, name_of)
    assert set(out) == {f"ensemble_{k}@m2+u" for k in ("confidence", "random", "oracle")}
    assert {r["choice"] for r in out["ensemble_oracle@m2+u"]} <= {"spatial_u", "m2"}


def test_ensemble_members_name_the_model_and_its_teacher():
    own = {"alpha_1": "paper", "m2": "delay_pair"}.__getitem__
    assert ensemble_members("alpha_1", own) == ("alpha_1", "paper")
    assert ensemble_members("m2+cacgmm_pair_rooms", own) == ("m2", "cacgmm_pair_rooms")
    assert ensemble_members("gt+delay_pair", own) == ("gt", "delay_pair")   # own never asked


def test_ensemble_names_round_trip():
    models = ["alpha_1", "delay_pair_alpha_1"]
    assert ensemble_approach("oracle", "alpha_1", models) == "ensemble_oracle"
    assert ensemble_approach("perbin", "delay_pair_alpha_1", models) == \
        "ensemble_perbin@delay_pair_alpha_1"
    for kind, model in itertools.product(("confidence", "perbin"), models):
        assert approach_ensemble(ensemble_approach(kind, model, models), models) == (kind, model)
    assert approach_ensemble("spatial_paper", models) is None
    assert approach_ensemble("alpha_1", models) is None


def test_best_ensemble_is_the_highest_mean_si_sdri():
    def rows(values):
        return [{"si_sdri": float(v)} for v in values]
    table = {"a": rows([1, 2, 3]), "b": rows([4, 0, 0]), "c": rows([1, 1, 5.5]),
             "d": rows([9, np.nan, 9])}
    cands = {("m1", "confidence"): "a", ("m1", "perbin"): "b", ("m2", "perbin"): "c",
             ("m2", "confidence"): "d"}
    # c's mean (2.5) beats a (2.0) and b (1.33); d has a NaN (no references): not measured
    assert best_ensemble(table, cands) == {"entry": "m2", "kind": "perbin", "approach": "c",
                                           "si_sdri": 2.5}
    assert best_ensemble(table, {("m1", "confidence"): "a", ("m1", "perbin"): "a"})["kind"] \
        == "confidence"                                              # a tie: the first
    assert best_ensemble(table, {("m2", "confidence"): "d"}) is None


def _valid_case(perbin_means: dict[float, list[float]], refs: bool = True):
    """Validation rows of a teacher, a model and its per-bin candidates (si_sdri per mixture)."""
    def rows(values, conf=None):
        return [{"si_sdr": v if refs else np.nan, "si_sdri": v if refs else np.nan,
                 "mean_confidence": c, "approach": ""}
                for v, c in zip(values, conf or [0.5] * len(values))]
    valid = {"spatial_t": rows([5.0, 1.0, 4.0], [0.9, 0.1, 0.8]), "m": rows([2.0, 3.0, 2.0])}
    cands = {("m", q): f"ensemble_perbin~{q:g}" for q in perbin_means}
    valid.update({cands["m", q]: rows(v) for q, v in perbin_means.items()})
    names = {("m", k): f"ensemble_{k}" for k in ("confidence", "random", "oracle", "perbin")}
    return valid, cands, names


def test_perbin_trust_and_best_ensemble_are_chosen_on_the_validation_rows():
    valid, cands, names = _valid_case({0.5: [5, 1, 4], 0.7: [5, 3, 5], 0.9: [4, 3, 5]})
    trust = choose_on_valid(valid, {"m": ("m", "t")}, {"m": 0.5}, cands, names, seed=0)
    assert trust == {"m": 0.7}                          # mean 4.33 beats 3.33 and 4.0
    assert valid["ensemble_perbin"] is valid[cands["m", 0.7]]
    # the confidence switch takes the teacher above the threshold, the model below: 5, 3, 4
    assert [r["si_sdri"] for r in valid["ensemble_confidence"]] == [5.0, 3.0, 4.0]
    best = best_ensemble(valid, {("m", k): names["m", k] for k in ("confidence", "perbin")})
    assert (best["kind"], best["si_sdri"]) == ("perbin", pytest.approx(13 / 3))


def test_perbin_trust_ties_and_no_references_take_the_first_candidate():
    valid, cands, names = _valid_case({0.6: [1, 2, 3], 0.8: [3, 2, 1]})
    assert choose_on_valid(valid, {"m": ("m", "t")}, {"m": 0.5}, cands, names, seed=0) \
        == {"m": 0.6}
    valid, cands, names = _valid_case({0.6: [1, 2, 3], 0.8: [9, 9, 9]}, refs=False)
    assert choose_on_valid(valid, {"m": ("m", "t")}, {"m": 0.5}, cands, names, seed=0) \
        == {"m": 0.6}


# ---------------------------------------------------------------------------------------
# the per-bin ensemble


def _masks(rng, k=2, t=7, f=5, hard=False):
    if hard:
        labels = rng.integers(0, k, size=(t, f))
        return (labels[None] == np.arange(k)[:, None, None]).astype(np.float32)
    g = rng.gamma(1.0, size=(k, t, f)).astype(np.float32)
    return g / g.sum(0, keepdims=True)


def test_perbin_equals_the_spatial_output_when_the_model_is_uninformative():
    # the requirement: a model mask of 1/K everywhere changes nothing, whatever the trust
    rng = np.random.default_rng(0)
    teacher = _masks(rng)
    for trust in (0.5, 0.8, 1.0, rng.uniform(0.5, 1.0, teacher.shape[1:])):
        out = perbin_masks(teacher, np.full_like(teacher, 0.5), trust)
        np.testing.assert_allclose(out, teacher, atol=1e-6)
    uniform3 = np.full((3, 4, 6), 1 / 3, np.float32)
    teacher3 = _masks(rng, k=3, t=4, f=6)
    np.testing.assert_allclose(perbin_masks(teacher3, uniform3, 0.9), teacher3, atol=1e-6)


def test_perbin_reduces_to_each_member_at_the_trust_ends():
    # trust 1/K: the teacher; trust 1: the model wherever the teacher allows its source
    rng = np.random.default_rng(1)
    teacher, model = _masks(rng), _masks(rng, hard=True)
    np.testing.assert_allclose(perbin_masks(teacher, model, 0.5), teacher, atol=1e-6)
    np.testing.assert_allclose(perbin_masks(teacher, model, 1.0), model, atol=1e-6)
    t3, m3 = _masks(rng, k=3), _masks(rng, k=3, hard=True)
    np.testing.assert_allclose(perbin_masks(t3, m3, 1 / 3), t3, atol=1e-6)


def test_perbin_is_bayes_rule_with_a_noisy_label():
    # an independent oracle: P(source k | teacher, label) with P(label = k | k) = q and the
    # other labels equally likely, by enumeration per bin
    rng = np.random.default_rng(2)
    teacher, model = _masks(rng, k=3), _masks(rng, k=3, hard=True)
    q = rng.uniform(1 / 3, 1, teacher.shape[1:]).astype(np.float32)
    out = perbin_masks(teacher, model, q)
    for t, f in itertools.product(range(q.shape[0]), range(q.shape[1])):
        label = int(np.argmax(model[:, t, f]))
        like = [q[t, f] if k == label else (1 - q[t, f]) / 2 for k in range(3)]
        joint = [teacher[k, t, f] * like[k] for k in range(3)]
        np.testing.assert_allclose(out[:, t, f], np.array(joint) / sum(joint), atol=1e-6)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-6)
    assert out.dtype == np.float32 and out.shape == teacher.shape
    with pytest.raises(ValueError, match="trust"):
        perbin_masks(teacher, model, 0.2)


def test_align_masks_resolves_a_swapped_permutation():
    rng = np.random.default_rng(3)
    mag = rng.uniform(0.1, 2.0, (9, 6))
    for k in (2, 3):
        teacher = _masks(rng, k=k, t=9, f=6)
        hard = (teacher.argmax(0)[None] == np.arange(k)[:, None, None]).astype(np.float32)
        for perm in itertools.permutations(range(k)):
            shuffled = hard[list(perm)]
            got = align_masks(teacher, shuffled, mag)
            np.testing.assert_array_equal(shuffled[got], hard)
    # the magnitude decides: two components that agree on different bins
    teacher = np.zeros((2, 1, 4), np.float32)
    teacher[0, 0, :2], teacher[1, 0, 2:] = 1, 1                      # T0: bins 0,1; T1: bins 2,3
    model = np.zeros((2, 1, 4), np.float32)
    model[0, 0, [0, 2]], model[1, 0, [1, 3]] = 1, 1                  # M0: bins 0,2; M1: bins 1,3
    loud_0_3 = np.array([[5.0, 1.0, 1.0, 5.0]])
    np.testing.assert_array_equal(align_masks(teacher, model, loud_0_3), [0, 1])
    loud_1_2 = np.array([[1.0, 5.0, 5.0, 1.0]])
    np.testing.assert_array_equal(align_masks(teacher, model, loud_1_2), [1, 0])
