"""Ensemble choices of paper §3.3 (True = spatial)."""

import numpy as np
import pytest

from bootsep.evaluate.ensemble import (
    choose_confidence,
    choose_oracle,
    choose_random,
    confidence_threshold,
)
from bootsep.evaluate.scoring import ENSEMBLES, ensemble_rows


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
