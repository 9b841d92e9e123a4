"""Report generation (Table 1, figures) on a tiny synthetic result set."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from bootsep.config import load_config
from bootsep.errors import BootsepError
from bootsep.evaluate.scoring import COLUMNS, ENSEMBLES, csv_text
from bootsep.stages import s9_report as report
from bootsep.train.conditions import condition_names
from bootsep.train.skipped import NO_REFERENCES

REPO = Path(__file__).resolve().parent.parent


def _rows(rng, split, approach, n, mean_sdr, conf):
    return [{"split": split, "id": f"{split}_{i:03d}", "approach": approach,
             "si_sdr": float(mean_sdr + rng.normal()), "si_sir": 10.0, "si_sar": 5.0,
             "si_sdri": float(mean_sdr + 1), "mean_confidence": float(conf[i]), "choice": "",
             "permutation": "0 1"} for i in range(n)]


@pytest.fixture()
def results(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["spatial"]["teachers"] = {"paper": {"method": "paper", "channels": "pair"}}
    params["self_training"]["rounds"], params["train_conditions"]["rounds"] = {}, {}
    params["train_conditions"]["spatial"] = {
        n: c for n, c in params["train_conditions"]["spatial"].items() if c["teacher"] == "paper"}
    params["evaluate"]["ensemble_models"] = ["alpha_1"]
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    conf_valid, conf_test = rng.uniform(0, 0.3, 20), rng.uniform(0, 0.3, 12)
    rows = _rows(rng, "valid", "spatial_paper", 20, 3.0, conf_valid)
    names = condition_names(load_config(params_path, ["train_conditions"]).train_conditions)
    for k, name in enumerate(names):
        rows += _rows(rng, "test", name, 12, float(k), conf_test)
    rows += _rows(rng, "test", "spatial_paper", 12, 4.0, conf_test)
    for name in ENSEMBLES:
        rows += [{**r, "choice": "spatial_paper"}
                 for r in _rows(rng, "test", name, 12, 5.0, conf_test)]
    rows += _rows(rng, "test", "ensemble_perbin", 12, 5.5, conf_test)
    res = tmp_path / "results"
    (res / "eval" / "examples" / "test_000").mkdir(parents=True)
    (res / "eval" / "per_mixture.csv").write_text(csv_text(rows))
    (res / "eval" / "ensemble.json").write_text(json.dumps(
        {"model": "alpha_1", "teacher": "paper", "percentile": 25, "threshold": 0.07,
         "valid_mixtures": 20, "has_references": True}))
    np.savez(res / "eval" / "examples" / "test_000" / "masks.npz",
             logmag_db=rng.normal(size=(50, 129)),
             mask_spatial_paper=rng.uniform(size=(2, 50, 129)),
             mask_alpha_1=rng.uniform(size=(2, 50, 129)))
    (res / "labels").mkdir()
    (res / "labels" / "labels.json").write_text(json.dumps({"conditions": {
        n: {"quality": 0.3, "quantity": 0.2} for n in names}, "label_accuracy": {
        "paper": {"overall": 0.7, "split": "train", "confidence_spearman": 0.45}}}))
    models = tmp_path / "models"
    for n in names:
        (models / n).mkdir(parents=True)
        (models / n / "log.csv").write_text("epoch,train_loss,valid_loss\n0,1.0,1.1\n1,0.8,0.9\n")
    return params_path, res, models, rows


def test_table1_and_figures(results):
    params_path, res, models, rows = results
    report.main(params_path, res, models)
    result = json.loads((res / "table1.json").read_text())
    table = result["rows"]
    assert list(table)[:2] == ["gt", "gt_subset"] and "ensemble_confidence" in table
    # Fig. 2's r is the paper's: of the confidence itself, "not its log" (scipy as the oracle)
    valid = [r for r in rows if r["split"] == "valid" and r["approach"] == "spatial_paper"]
    conf = np.array([r["mean_confidence"] for r in valid])
    sdr = np.array([r["si_sdr"] for r in valid])
    fig2 = result["fig2_confidence_vs_sdr"]
    # (per_mixture.csv keeps 6 significant digits, hence rel=1e-4)
    assert fig2["pearson_r"] == pytest.approx(scipy.stats.pearsonr(conf, sdr)[0], rel=1e-4)
    assert fig2["pearson_r_log"] == pytest.approx(
        scipy.stats.pearsonr(np.log(np.maximum(conf, 1e-4)), sdr)[0], rel=1e-4)
    assert fig2["pearson_r"] != pytest.approx(fig2["pearson_r_log"])
    assert fig2["mixtures"] == len(valid)
    spatial_test = [r["si_sdr"] for r in rows
                    if r["split"] == "test" and r["approach"] == "spatial_paper"]
    assert table["spatial_paper"]["si_sdr"] == pytest.approx(np.mean(spatial_test))
    assert table["spatial_paper"]["si_sdr_ci"] > 0
    assert table["alpha_1"]["quality"] == 0.3
    md = (res / "table1.md").read_text()
    assert "Spatial teacher paper (paper)" in md and "(4.3)" in md   # the paper's number too
    assert "label accuracy 0.700, confidence ρ 0.45" in md          # the labels stage's
    assert table["spatial_paper"]["confidence_spearman"] == 0.45
    header = next(line for line in md.splitlines() if line.startswith("| |"))
    body = [line for line in md.splitlines() if line.startswith(("| 1ch", "| 2ch"))]
    assert len(body) == len(table) and all(line.count("|") == header.count("|") for line in body)
    for name in ("fig2_confidence_vs_sdr.png", "fig3_spatial_vs_model.png", "training_curves.png",
                 "example_test_000.png"):
        assert (res / "figures" / name).stat().st_size > 5000


def test_table1_by_test_subset(results):
    """Each test subset (the manifest's ``subset``) gets its own SI-SDR/SI-SDRi, the mean of its
    own rows; the overall column stays the mean over every test mixture."""
    params_path, res, models, rows = results
    subset_of = {f"test_{i:03d}": ("heldout_engine" if i % 3 == 0 else "in_domain")
                 for i in range(12)}
    for r in rows:
        r["subset"] = subset_of[r["id"]] if r["split"] == "test" else "in_domain"
    (res / "eval" / "per_mixture.csv").write_text(csv_text(rows))
    report.main(params_path, res, models)
    table = json.loads((res / "table1.json").read_text())["rows"]
    for approach in ("gt", "spatial_paper", "ensemble_confidence"):
        sel = [r for r in rows if r["split"] == "test" and r["approach"] == approach]
        by = table[approach]["by_subset"]
        assert list(by) == ["heldout_engine", "in_domain"]   # order of appearance
        for name, n in (("heldout_engine", 4), ("in_domain", 8)):
            part = [r["si_sdr"] for r in sel if r["subset"] == name]
            assert by[name]["mixtures"] == n
            assert by[name]["si_sdr"] == pytest.approx(np.mean(part), rel=1e-5)
        assert table[approach]["si_sdr"] == pytest.approx(np.mean([r["si_sdr"] for r in sel]),
                                                          rel=1e-5)
    md = (res / "table1.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| |"))
    assert header.endswith("SI-SDRi heldout_engine | SI-SDRi in_domain |")
    body = [line for line in md.splitlines() if line.startswith(("| 1ch", "| 2ch"))]
    assert all(line.count("|") == header.count("|") for line in body)


def test_table1_without_subsets_has_no_subset_columns(results):
    params_path, res, models, _ = results
    report.main(params_path, res, models)
    table = json.loads((res / "table1.json").read_text())["rows"]
    assert not any("by_subset" in row for row in table.values())
    assert "SI-SDRi in_domain" not in (res / "table1.md").read_text()


def test_table1_without_references(results):
    """A folder corpus without references: NaN metrics, only the confidence and per-bin
    ensembles, the ground-truth models skipped markers, labels with quantity and no quality."""
    params_path, res, models, rows = results
    metrics = ("si_sdr", "si_sir", "si_sar", "si_sdri")
    rows = [{**r, **{m: float("nan") for m in metrics}, "permutation": ""} for r in rows
            if r["approach"] not in ("ensemble_random", "ensemble_oracle")]
    for i, r in enumerate(r for r in rows if r["approach"] == "ensemble_confidence"):
        r["choice"] = "spatial_paper" if i % 4 else "alpha_1"        # 9 of 12 spatial
    (res / "eval" / "per_mixture.csv").write_text(csv_text(rows))
    ensemble = json.loads((res / "eval" / "ensemble.json").read_text())
    (res / "eval" / "ensemble.json").write_text(json.dumps({**ensemble, "has_references": False}))
    names = condition_names(load_config(params_path, ["train_conditions"]).train_conditions)
    gt = [n for n in names if n.startswith("gt")]
    labels = {n: ({"labels": "gt", "quality": None, "quantity": None, "skipped": NO_REFERENCES}
                  if n in gt else {"labels": "spatial", "quality": None, "quantity": 0.5})
              for n in names}
    (res / "labels" / "labels.json").write_text(json.dumps({"conditions": labels}))
    for n in gt:    # what the train stage leaves for a ground-truth condition
        (models / n / "params.json").write_text(json.dumps({"skipped": NO_REFERENCES}))
        (models / n / "log.csv").write_text("epoch,train_loss,valid_loss\n")
    report.main(params_path, res, models)

    result = json.loads((res / "table1.json").read_text())
    table = result["rows"]
    assert result["has_references"] is False
    assert set(table) == {*names, "spatial_paper", "ensemble_confidence", "ensemble_perbin"}
    for name, row in table.items():
        assert row["needs_references"] is True
        assert all(row[m] is None and row[f"{m}_ci"] is None for m in metrics), name
    for n in gt:
        assert table[n]["skipped"] == NO_REFERENCES and table[n]["mixtures"] == 0
        assert table[n]["quality"] is None and table[n]["quantity"] is None
    assert table["alpha_1"]["quality"] is None and table["alpha_1"]["quantity"] == 0.5
    assert table["ensemble_confidence"]["spatial_share"] == 0.75
    assert "NaN" not in (res / "table1.json").read_text()

    md = (res / "table1.md").read_text()
    assert "no reference sources" in md and "75% of the test mixtures" in md
    assert "Means over 12 test mixtures" in md
    body = {line.split(" | ")[1]: line.split(" | ")[2:] for line in md.splitlines()
            if line.startswith(("| 1ch", "| 2ch"))}
    assert len(body) == len(table)
    for label, cells in body.items():
        assert all(c.startswith("needs references") for c in cells[2:]), (label, cells)
        assert "nan" not in " ".join(cells).lower()
    gt_rows = [c for label, c in body.items() if label.startswith("DC w/ ground truth")]
    assert len(gt_rows) == len(gt) and all(label.endswith("(not trained)") for label in body
                                           if label.startswith("DC w/ ground truth"))
    assert all(c[0].startswith("needs references") and c[1].startswith("needs references")
               for c in gt_rows)
    alpha_1 = body["DC w/ estimates of paper, α = 1"]
    assert alpha_1[0].startswith("needs references") and alpha_1[1].startswith("0.500")
    assert body["Spatial teacher paper (paper)"][0].startswith("–")   # no labels: no quality
    figures = sorted(p.name for p in (res / "figures").iterdir())
    assert figures == ["example_test_000.png", "training_curves.png"]


def test_missing_results_is_a_clear_error(results):
    params_path, res, models, _ = results
    (res / "eval" / "per_mixture.csv").unlink()
    with pytest.raises(BootsepError, match="per_mixture.csv.*run the evaluate stage"):
        report.main(params_path, res, models)
    assert not (res / "table1.json").exists()


def test_columns_cover_every_metric():
    assert {"si_sdr", "si_sir", "si_sar", "si_sdri", "mean_confidence", "choice"} <= set(COLUMNS)


def test_report_stage_does_not_import_torch():
    """The report stage (Table 1, figures) reads results only: importing it loads no torch."""
    code = ("import sys, bootsep.cli, bootsep.stages.s9_report; "
            "sys.exit(3 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_table1_rows_per_ensembled_model(results):
    """Every model of evaluate.ensemble_models gets its four ensemble rows, labelled with its
    teacher and itself; the paper's numbers sit only beside the first model's switches."""
    params_path, res, models, rows = results
    params = yaml.safe_load(params_path.read_text())
    params["evaluate"]["ensemble_models"] = ["alpha_1", "alpha_2"]
    params_path.write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(5)
    conf = rng.uniform(0, 0.3, 12)
    second = {f"{name}@alpha_2": 7.0 + k for k, name in enumerate((*ENSEMBLES, "ensemble_perbin"))}
    for name, mean in second.items():
        rows += [{**r, "choice": "" if "perbin" in name else "alpha_2"}
                 for r in _rows(rng, "test", name, 12, mean, conf)]
    (res / "eval" / "per_mixture.csv").write_text(csv_text(rows))
    ensemble = json.loads((res / "eval" / "ensemble.json").read_text())
    entry = {"teacher": "paper", "percentile": 25, "valid_mixtures": 20}
    (res / "eval" / "ensemble.json").write_text(json.dumps({
        **ensemble, "models": {"alpha_1": {**entry, "threshold": 0.07},
                               "alpha_2": {**entry, "threshold": 0.11}},
        "best": {"model": "alpha_2", "kind": "perbin", "approach": "ensemble_perbin@alpha_2",
                 "si_sdri": 11.0}}))
    report.main(params_path, res, models)
    result = json.loads((res / "table1.json").read_text())
    table = result["rows"]
    kinds = ("oracle", "random", "confidence", "perbin")
    want = [f"ensemble_{k}" for k in kinds] + [f"ensemble_{k}@alpha_2" for k in kinds]
    assert [a for a in table if a.startswith("ensemble_")] == want
    for name in second:
        sel = [r["si_sdr"] for r in rows if r["approach"] == name]
        assert table[name]["si_sdr"] == pytest.approx(np.mean(sel), rel=1e-5)
        assert ("spatial_share" in table[name]) == ("perbin" not in name)
    assert table["ensemble_oracle@alpha_2"]["spatial_share"] == 0.0   # every row chose alpha_2
    assert result["best_ensemble"]["approach"] == "ensemble_perbin@alpha_2"
    md = (res / "table1.md").read_text()
    line = {row.split(" | ")[1]: row for row in md.splitlines() if row.startswith("| 2ch")}
    assert len(line) == 1 + 8                                          # the teacher, 2 x 4
    # the paper's SI-SDR only beside the first model's per-mixture switches
    assert "(5.0) |" in line["Ensemble (confidence) of teacher paper + model alpha_1"]
    assert "(6.2) |" in line["Ensemble (oracle) of teacher paper + model alpha_1"]
    for model, kind in itertools.product(("alpha_1", "alpha_2"), kinds):
        cells = line[f"Ensemble ({kind}) of teacher paper + model {model}"].split(" | ")[4:7]
        in_paper = model == "alpha_1" and kind != "perbin"
        assert all(c.endswith("(–)") != in_paper for c in cells), (model, kind, cells)
    assert "0.0700 (alpha_1, teacher paper); 0.1100 (alpha_2, teacher paper)" in md
    assert "perbin of alpha_2 (11.00 dB SI-SDRi)" in md


# --- conditions (anechoic, reverb) and the direct path (issue 23) --------------------------


def _with_conditions(rows, seed=3, subsets=False):
    """The rows with a ``condition`` per mixture (every third test mixture anechoic, the rest
    reverberant; validation alternating), varying SI-SDRi, and the metrics against the direct
    path (lower, as in a room); ``subsets`` adds a subset column crossing the conditions."""
    rng = np.random.default_rng(seed)
    for r in rows:
        i = int(r["id"].rsplit("_", 1)[1])
        r["condition"] = ("anechoic" if i % 3 == 0 else "reverb") if r["split"] == "test" \
            else ("anechoic" if i % 2 else "reverb")
        r["rt60_s"] = "" if r["condition"] == "anechoic" else f"{rng.uniform(0.2, 0.6):.3f}"
        if subsets:
            r["subset"] = "heldout_engine" if i % 2 else "in_domain"
        r["si_sdri"] = float(r["si_sdr"] + rng.normal(1.0, 2.0))
        r["si_sdr_direct"] = float(r["si_sdr"] - rng.uniform(0.5, 3.0))
        r["si_sdri_direct"] = float(r["si_sdri"] - rng.uniform(0.5, 3.0))
    return rows


def test_table1_by_condition_adds_up_to_the_overall_row(results):
    """Each condition gets its own SI-SDR/SI-SDRi (and SI-SDRi against the direct path), the
    mean of its own rows; weighted by their mixture counts the conditions give the overall
    means (for every metric reported per condition); the markdown gets a column per condition
    after the subsets'; Fig. 2 is drawn per condition, each with its own r."""
    params_path, res, models, rows = results
    rows = _with_conditions(rows, subsets=True)
    (res / "eval" / "per_mixture.csv").write_text(csv_text(rows))
    report.main(params_path, res, models)
    result = json.loads((res / "table1.json").read_text())
    table = result["rows"]
    overall_key = {"si_sdr": ("si_sdr",), "si_sdri": ("si_sdri",),
                   "si_sdri_direct": ("direct", "si_sdri")}
    for approach in ("gt", "alpha_1", "spatial_paper", "ensemble_confidence", "ensemble_perbin"):
        sel = [r for r in rows if r["split"] == "test" and r["approach"] == approach]
        row, by = table[approach], table[approach]["by_condition"]
        assert list(by) == ["anechoic", "reverb"]                     # order of appearance
        assert [by[c]["mixtures"] for c in by] == [4, 8]
        for metric, path in overall_key.items():
            for name in by:
                part = [r[metric] for r in sel if r["condition"] == name]
                assert by[name][metric] == pytest.approx(np.mean(part), rel=1e-5)
                assert by[name][f"{metric}_ci"] > 0
            overall = row[path[0]] if len(path) == 1 else row[path[0]][path[1]]
            weighted = sum(by[c]["mixtures"] * by[c][metric] for c in by) / len(sel)
            assert weighted == pytest.approx(overall, rel=1e-6), (approach, metric)
            assert overall == pytest.approx(np.mean([r[metric] for r in sel]), rel=1e-5)
        assert row["direct"]["si_sdr"] == pytest.approx(
            np.mean([r["si_sdr_direct"] for r in sel]), rel=1e-5)
        assert row["direct"]["si_sdr"] < row["si_sdr"]
        assert set(table[approach]["by_subset"]) == {"in_domain", "heldout_engine"}
    md = (res / "table1.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| |"))
    assert header.endswith("| SI-SDRi | SI-SDRi in_domain | SI-SDRi heldout_engine | "
                           "SI-SDRi anechoic | SI-SDRi reverb |")
    body = [line for line in md.splitlines() if line.startswith(("| 1ch", "| 2ch"))]
    assert len(body) == len(table) and all(line.count("|") == header.count("|") for line in body)
    reverb = table["spatial_paper"]["by_condition"]["reverb"]
    spatial = next(line for line in body if "Spatial teacher paper" in line)
    assert spatial.endswith(f"| {reverb['si_sdri']:.1f} ± {reverb['si_sdri_ci']:.1f} |")
    assert "anechoic: 4 mixtures, reverb: 8 mixtures" in md and "direct path" in md
    fig2 = result["fig2_confidence_vs_sdr"]
    valid = [r for r in rows if r["split"] == "valid" and r["approach"] == "spatial_paper"]
    for name in ("anechoic", "reverb"):
        part = [r for r in valid if r["condition"] == name]
        got = fig2["by_condition"][name]
        assert got["mixtures"] == len(part) == 10
        assert got["pearson_r"] == pytest.approx(scipy.stats.pearsonr(
            [r["mean_confidence"] for r in part], [r["si_sdr"] for r in part])[0], rel=1e-4)
    assert fig2["mixtures"] == 20 and (res / "figures" / "fig2_confidence_vs_sdr.png").is_file()


def test_older_results_without_conditions_give_todays_table(results):
    """per_mixture.csv written before conditions (no condition, rt60_s or direct columns) and
    the same rows with those columns empty give the same report, without any new column."""
    params_path, res, models, rows = results
    old_columns = [c for c in COLUMNS if c not in ("condition", "rt60_s", "si_sdr_direct",
                                                   "si_sdri_direct")]
    new_text = csv_text(rows)
    old_text = "\n".join(",".join(line[c] for c in old_columns) for line in [
        dict(zip(COLUMNS, row.split(","))) for row in new_text.splitlines()]) + "\n"
    assert "condition" in new_text.splitlines()[0] and "condition" not in old_text
    outputs = []
    for text in (old_text, new_text):
        (res / "eval" / "per_mixture.csv").write_text(text)
        report.main(params_path, res, models)
        outputs.append(((res / "table1.md").read_text(),
                        json.loads((res / "table1.json").read_text())))
    assert outputs[0] == outputs[1]
    md, result = outputs[0]
    header = next(line for line in md.splitlines() if line.startswith("| |"))
    assert header == "| | Approach | Quality | Quantity | SI-SDR | SI-SIR | SI-SAR | SI-SDRi |"
    assert "direct" not in md
    for row in result["rows"].values():
        assert not {"by_condition", "by_subset", "direct"} & set(row)
    assert "by_condition" not in result["fig2_confidence_vs_sdr"]


def test_one_condition_gives_no_condition_columns(results):
    """A corpus of reverberant mixtures only: no per-condition split, but the direct path."""
    params_path, res, models, rows = results
    rows = _with_conditions(rows)
    for r in rows:
        r["condition"] = "reverb"
    (res / "eval" / "per_mixture.csv").write_text(csv_text(rows))
    report.main(params_path, res, models)
    table = json.loads((res / "table1.json").read_text())["rows"]
    assert not any("by_condition" in row for row in table.values())
    assert all("direct" in row for row in table.values())
    header = next(line for line in (res / "table1.md").read_text().splitlines()
                  if line.startswith("| |"))
    assert header.endswith("| SI-SAR | SI-SDRi |")


def _room_case(seed=0, length=4000):
    """Two dry sources, their reverberant images at the reference mic (a direct impulse and a
    decaying tail) and estimates in swapped order that leak the other source."""
    rng = np.random.default_rng(seed)
    dry = rng.standard_normal((2, length))
    images = []
    for s in dry:
        rir = np.zeros(1200)
        rir[0] = 1.0
        rir[30:] = 0.3 * rng.standard_normal(1170) * np.exp(-np.arange(1170) / 250)
        images.append(np.convolve(s, rir)[:length])
    images = np.stack(images)
    est = np.stack([images[1] + 0.3 * images[0], images[0] + 0.2 * images[1]])
    est += 0.05 * rng.standard_normal(est.shape)
    return dry, images, est


def _estimates(images, est, direct):
    from bootsep.evaluate.estimates import MixtureEstimates
    out = MixtureEstimates("m0", images.sum(0), images, {"paper": 0.1}, condition="reverb",
                           rt60_s="0.4", direct=direct)
    out.estimates = {"spatial_paper": est}
    return out


def test_direct_path_si_sdr_against_an_oracle():
    """With the image itself as the direct path the direct metrics equal the image ones; with
    the dry source of a reverberant image they are lower, and match the textbook SI-SDR of the
    estimate chosen for each source against the image (not the one in the same position)."""
    from oracles import si_sdr_db

    from bootsep.evaluate.scoring import score
    dry, images, est = _room_case()
    same = score(_estimates(images, est, images.copy()), "test", "spatial_paper", "paper")
    assert same["permutation"] == "1 0"
    assert same["si_sdr_direct"] == pytest.approx(same["si_sdr"], abs=1e-9)
    assert same["si_sdri_direct"] == pytest.approx(same["si_sdri"], abs=1e-9)
    assert (same["condition"], same["rt60_s"]) == ("reverb", "0.4")
    row = score(_estimates(images, est, dry), "test", "spatial_paper", "paper")
    assert row["si_sdr"] == pytest.approx(same["si_sdr"])   # the image stays the reference
    mix = images.sum(0)
    oracle = np.mean([si_sdr_db(est[1 - j], dry[j]) for j in range(2)])
    oracle_i = np.mean([si_sdr_db(est[1 - j], dry[j]) - si_sdr_db(mix, dry[j])
                        for j in range(2)])
    assert row["si_sdr_direct"] == pytest.approx(oracle, abs=1e-6)
    assert row["si_sdri_direct"] == pytest.approx(oracle_i, abs=1e-6)
    assert row["si_sdr_direct"] < row["si_sdr"] - 1.0
    no_direct = score(_estimates(images, est, None), "test", "spatial_paper", "paper")
    assert "si_sdr_direct" not in no_direct
    lines = csv_text([no_direct]).splitlines()
    assert dict(zip(COLUMNS, lines[1].split(",")))["si_sdr_direct"] == ""
