"""The ``labels`` stage (§3.4) end to end on synthetic shards: quantity and quality per condition,
recomputed from the written per-mixture rows and from the shards' own arrays."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from bootsep.evaluate.quality import mixture_label_stats
from bootsep.pipeline.storage.shards import Shard, shard_name
from bootsep.stages.s7_labels import main
from bootsep.train.synthetic import TINY_STFT, write_synthetic_corpus, write_synthetic_split

N_TRAIN = 40
ALPHAS = {"alpha_0": 0.0, "alpha_05": 0.5, "alpha_1": 1.0, "alpha_2": 2.0}


@pytest.fixture(scope="module")
def labels_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("labels")
    write_synthetic_corpus(root / "shards", {"train": N_TRAIN, "valid": 8},
                           utterances_per_shard=16, frames=(10, 30), seed=3)
    params = {
        "stft": {"sample_rate": TINY_STFT.sample_rate, "window_ms": 4, "hop_ms": 1,
                 "window": "hann", "pair_channels": [1], "seed": 1},
        "spatial": {"teachers": {"paper": {"method": "paper", "channels": "pair"}}},
        "self_training": {"rounds": {}},
        "train": {"seed": 0},
        "train_conditions": {"gt": {"gt": {"fraction": 1.0}, "gt_subset": {"fraction": 0.25}},
                             "spatial": {n: {"teacher": "paper", "alpha": a, "fraction": 1.0}
                                         for n, a in ALPHAS.items()},
                             "rounds": {}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    main(root / "params.yaml", shard_root=root / "shards", out=root / "out")
    summary = json.loads((root / "out" / "labels.json").read_text())
    rows = list(csv.DictReader((root / "out" / "per_mixture.csv").open()))
    return root, summary, rows


def test_gt_quantity_is_one_and_gt_subset_its_fraction(labels_run):
    # Catches a gt_subset quantity of 1 (subset ignored) or of its mixture count, and a
    # quantity over the valid split (8 mixtures written there too).
    _, summary, rows = labels_run
    cond = summary["conditions"]
    assert summary["train_mixtures"] == N_TRAIN == len(rows)
    assert cond["gt"]["quantity"] == 1.0 and cond["gt"]["quality"] == 1.0
    assert cond["gt_subset"]["quantity"] == pytest.approx(0.25)       # 10 of 40, exactly
    assert cond["gt_subset"]["labels"] == "gt" and cond["gt_subset"]["quality"] == 1.0


def test_spatial_quantity_falls_with_alpha_and_aggregates_the_rows(labels_run):
    # quantity = Σ_m Σw_m(α) / N (the gt weights sum to 1 per mixture, so α = 0 gives 1);
    # quality = Σ_m q_m Σw_m / Σ_m Σw_m. Catches an unweighted mean of the q_m, a quantity
    # that is not divided by the number of mixtures, and one that does not fall with α
    # (the synthetic confidences are < 1).
    _, summary, rows = labels_run
    cond = summary["conditions"]
    quantities = [cond[n]["quantity"] for n in ALPHAS]
    assert quantities[0] == pytest.approx(1.0, abs=1e-4)
    assert all(a > b for a, b in zip(quantities, quantities[1:])), quantities
    assert quantities[-1] < 0.5
    for name, alpha in ALPHAS.items():
        assert cond[name]["alpha"] == alpha
        sums = np.array([float(r[f"{name}_sum_w"]) for r in rows])
        quals = np.array([float(r[f"{name}_quality"]) for r in rows])
        assert cond[name]["quantity"] == pytest.approx(sums.sum() / N_TRAIN, rel=1e-5)
        weighted = float((sums * quals).sum() / sums.sum())
        assert cond[name]["quality"] == pytest.approx(weighted, rel=1e-5)
        assert 0 < cond[name]["quality"] < 1
    unweighted = np.mean([float(r["alpha_2_quality"]) for r in rows])
    assert abs(unweighted - cond["alpha_2"]["quality"]) > 1e-3       # the weighting matters


def test_rows_are_the_mixtures_stats_in_id_order(labels_run):
    # Each row is mixture_label_stats of that mixture's arrays (read here shard by shard),
    # so rows cannot be shifted between mixtures or mixed across stages.
    root, _, rows = labels_run
    want = []
    for k in range(-(-N_TRAIN // 16)):                                   # 16 per shard
        paths = [root / "shards" / s / "train" / shard_name(k)
                 for s in ("stft", "spatial/paper", "confidence/paper")]
        with Shard(paths[0]) as st, Shard(paths[1]) as sp, Shard(paths[2]) as cf:
            data = zip(st.ids, st.all_frames("mix_logmag_db"), st.all_frames("source_mag"),
                       sp.all_frames("labels"), cf.utterances("c_cl"), cf.utterances("c_jsd"),
                       cf.all_frames("c_post"))
            for uid, lm, src, lab, cl, jsd, cp in data:
                want.append((uid, mixture_label_stats(lm, src, lab, cl, jsd, cp, ALPHAS)))
    assert [r["id"] for r in rows] == [uid for uid, _ in want] and len(want) == N_TRAIN
    for r, (_, stats) in zip(rows, want):
        for name, (s, q) in stats.items():
            assert float(r[f"{name}_sum_w"]) == pytest.approx(s, rel=1e-5)
            assert float(r[f"{name}_quality"]) == pytest.approx(q, rel=1e-5, abs=1e-6)


def band_accuracy_oracle(shards, teacher, split, count, per_shard=16):
    """Magnitude-weighted label accuracy per 1 kHz band of ``teacher``'s labels on ``split``,
    with a plain loop over bins and the permutation resolved per mixture (K = 2)."""
    sr, nf = TINY_STFT.sample_rate, TINY_STFT.num_freq
    freqs = np.linspace(0, sr / 2, nf)
    bands = int(np.ceil(sr / 2 / 1000))
    correct, total = np.zeros(bands), np.zeros(bands)
    for k in range(-(-count // per_shard)):
        paths = [shards / "stft" / split / shard_name(k),
                 shards / "spatial" / teacher / split / shard_name(k)]
        with Shard(paths[0]) as st, Shard(paths[1]) as sp:
            for lm, src, lab in zip(st.all_frames("mix_logmag_db"), st.all_frames("source_mag"),
                                    sp.all_frames("labels")):
                truth, w = np.argmax(src, axis=1), 10.0 ** (lm.astype(np.float64) / 20)
                swap = (w * (lab != truth)).sum() > (w * (lab == truth)).sum()
                ok = (lab != truth) if swap else (lab == truth)
                for f in range(nf):
                    b = min(int(freqs[f] // 1000), bands - 1)
                    correct[b] += (w[:, f] * ok[:, f]).sum()
                    total[b] += w[:, f].sum()
    return correct, total


def test_label_accuracy_by_band_is_the_magnitude_weighted_accuracy(labels_run):
    # The diagnostic of issue 20: the spatial labels' accuracy against the ideal binary labels,
    # weighted by |X|, per frequency band, the permutation resolved per mixture. Recomputed
    # here with a plain loop over bins; catches unweighted counts, per-band permutations and
    # bins put in the wrong band.
    root, summary, _ = labels_run
    acc = summary["label_accuracy"]["paper"]
    sr = TINY_STFT.sample_rate
    assert len(acc["bands"]) == int(np.ceil(sr / 2 / 1000)) and acc["split"] == "train"
    correct, total = band_accuracy_oracle(root / "shards", "paper", "train", N_TRAIN)
    got = [b["accuracy"] for b in acc["bands"]]
    np.testing.assert_allclose(got, correct / total, rtol=1e-4)
    assert acc["overall"] == pytest.approx(correct.sum() / total.sum(), rel=1e-4)
    assert acc["bands"][0]["from_hz"] == 0 and acc["bands"][-1]["to_hz"] == sr / 2


def test_a_teacher_fitted_without_the_training_split_is_scored_on_valid(labels_run, tmp_path):
    # fit_train: false (a teacher no student learns from): its shards hold valid and test
    # only; the stage scores its labels on the validation split and says so, and its
    # mixtures do not join the training rows.
    root, summary, rows = labels_run
    shards = tmp_path / "shards"
    write_synthetic_corpus(shards, {"train": N_TRAIN, "valid": 8},
                           utterances_per_shard=16, frames=(10, 30), seed=3)
    write_synthetic_split(shards, "valid", 8, utterances_per_shard=16, frames=(10, 30), seed=3,
                          stages=("spatial", "confidence"), teacher="valid_only")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["spatial"]["teachers"]["valid_only"] = {"method": "delay", "channels": "pair",
                                                   "fit_train": False}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    main(tmp_path / "params.yaml", shard_root=shards, out=tmp_path / "out")
    got = json.loads((tmp_path / "out" / "labels.json").read_text())
    acc = got["label_accuracy"]["valid_only"]
    assert acc["split"] == "valid"
    correct, total = band_accuracy_oracle(shards, "valid_only", "valid", 8)
    assert acc["overall"] == pytest.approx(correct.sum() / total.sum(), rel=1e-4)
    assert got["label_accuracy"]["paper"] == summary["label_accuracy"]["paper"]
    assert got["conditions"] == summary["conditions"] and got["train_mixtures"] == N_TRAIN
    assert list(csv.DictReader((tmp_path / "out" / "per_mixture.csv").open())) == rows


def test_confidence_ranking_is_spearman_of_the_mixtures_confidence_and_accuracy(labels_run):
    # Per teacher, the rank correlation of mean_confidence (the confidence shards) with each
    # mixture's magnitude-weighted label accuracy, recomputed here with the plain loop of the
    # band oracle per mixture and average ranks by counting.
    root, summary, _ = labels_run
    conf, acc = [], []
    for k in range(-(-N_TRAIN // 16)):
        paths = [root / "shards" / s / "train" / shard_name(k)
                 for s in ("stft", "spatial/paper", "confidence/paper")]
        with Shard(paths[0]) as st, Shard(paths[1]) as sp, Shard(paths[2]) as cf:
            conf.extend(cf.utterances("mean_confidence").tolist())
            for lm, src, lab in zip(st.all_frames("mix_logmag_db"), st.all_frames("source_mag"),
                                    sp.all_frames("labels")):
                truth, w = np.argmax(src, axis=1), 10.0 ** (lm.astype(np.float64) / 20)
                ok = (w * (lab == truth)).sum() / w.sum()
                acc.append(max(ok, 1.0 - ok))
    ranks = [np.array([np.sum(x < v) + (np.sum(x == v) + 1) / 2.0 for v in x])
             for x in (np.array(conf), np.array(acc))]
    want = np.corrcoef(*ranks)[0, 1]
    got = summary["label_accuracy"]["paper"]["confidence_spearman"]
    assert len(conf) == N_TRAIN and got == pytest.approx(want, abs=1e-3)
