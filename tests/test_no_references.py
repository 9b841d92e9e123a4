"""A corpus without references (a folder of recordings): the train, labels and evaluate stages
complete on it, the ground-truth conditions become "skipped" markers, the label quantity is
still computed (and equals the quantity with references), the quality is unknown."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from bootsep.errors import BootsepError
from bootsep.stages import s5_train, s7_labels, s8_evaluate
from bootsep.train.loop import LOG_COLUMNS, LOG_CSV
from bootsep.train.saved_model import load_model
from bootsep.train.skipped import NO_REFERENCES, skipped_reason
from bootsep.train.synthetic import write_synthetic_corpus

REPO = Path(__file__).resolve().parent.parent


def declared_outputs(stage: str = "train_gt") -> list[str]:
    """The outs and metrics dvc.yaml declares for ``stage`` (paths with ``${key}``)."""
    body = yaml.safe_load((Path(__file__).resolve().parent.parent / "dvc.yaml").read_text())
    body = body["stages"][stage]["do"]
    return [next(iter(e)) if isinstance(e, dict) else e
            for e in body.get("outs", []) + body.get("metrics", [])]


def write_params(path: Path, **evaluate) -> Path:
    """params.yaml at the synthetic shards' STFT (8 kHz, window 32, hop 8), a tiny model."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["stft"].update(window_ms=4, hop_ms=1)
    params["model"].update(size="tiny", sizes={"tiny": {"hidden": 8, "num_layers": 1,
                                                        "embedding_dim": 4}})
    params["train"].update(epochs=1, batch_size=4, max_frames=30, loader_workers=0,
                           shuffle_buffer=8, torch_threads=1, device="cpu")
    params["train_conditions"]["gt"]["gt_subset"]["fraction"] = 0.25
    params["spatial"]["teachers"] = {"paper": {"method": "paper", "channels": "pair"}}
    params["self_training"]["rounds"], params["train_conditions"]["rounds"] = {}, {}
    params["train_conditions"]["spatial"] = {
        n: c for n, c in params["train_conditions"]["spatial"].items() if c["teacher"] == "paper"}
    params["evaluate"]["ensemble_models"] = ["alpha_1"]      # delay_pair_alpha_1 is left out
    params["evaluate"].update(evaluate)
    path.write_text(yaml.safe_dump(params))
    return path


def corpus(root: Path, references: bool) -> Path:
    write_synthetic_corpus(root, {"train": 24, "valid": 8}, utterances_per_shard=8,
                           frames=(20, 40), seed=7, references=references)
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> dict[bool, Path]:
    return {refs: corpus(tmp_path_factory.mktemp(f"refs_{refs}"), refs) for refs in (True, False)}


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_gt_condition_without_references_writes_every_declared_output(shards, tmp_path, caplog):
    params, models = write_params(tmp_path / "params.yaml"), tmp_path / "models"
    caplog.set_level(logging.INFO, logger="bootsep")
    s5_train.main(params, "gt", shard_root=shards[False], model_root=models)
    out = models / "gt"
    assert [r.getMessage() for r in caplog.records] == [f"train gt: skipped, {NO_REFERENCES} "
                                                        f"-> {out}"]
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                     if p.is_file() and p.name != "params.yaml")
    declared = [d.replace("${key}", "gt").removeprefix("data/") for d in declared_outputs()]
    assert written == sorted(declared) and len(declared) >= 6
    assert skipped_reason(out) == NO_REFERENCES
    assert json.loads((out / "metrics.json").read_text())["skipped"] == NO_REFERENCES
    assert (out / LOG_CSV).read_text().splitlines() == [",".join(LOG_COLUMNS)]
    with pytest.raises(BootsepError, match=r"gt: holds no model, not trained: the corpus has no"):
        load_model(out)
    # the same stage once the corpus has references trains (the marker checkpoint is not resumed)
    s5_train.main(params, "gt", shard_root=shards[True], model_root=models)
    assert skipped_reason(out) is None
    model, meta = load_model(out)
    assert meta["condition"]["name"] == "gt" and len(list((out / LOG_CSV).open())) == 2


def test_spatial_condition_trains_without_references(shards, tmp_path):
    params, models = write_params(tmp_path / "params.yaml"), tmp_path / "models"
    s5_train.main(params, "alpha_1", shard_root=shards[False], model_root=models)
    assert skipped_reason(models / "alpha_1") is None
    load_model(models / "alpha_1")


def _labels(params: Path, root: Path, out: Path) -> tuple[dict, list[dict]]:
    s7_labels.main(params, shard_root=root, out=out)
    with open(out / "per_mixture.csv", newline="") as f:
        return json.loads((out / "labels.json").read_text()), list(csv.DictReader(f))


def test_labels_without_references_keep_the_quantity(shards, tmp_path):
    params = write_params(tmp_path / "params.yaml")
    with_refs, rows_refs = _labels(params, shards[True], tmp_path / "with")
    without, rows = _labels(params, shards[False], tmp_path / "without")
    assert with_refs["has_references"] is True and without["has_references"] is False
    assert without["train_mixtures"] == with_refs["train_mixtures"] == 24
    for name, entry in without["conditions"].items():
        assert entry["quality"] is None
        if entry["labels"] == "gt":
            assert entry["quantity"] is None and entry["skipped"] == NO_REFERENCES
        else:   # Σw needs only the mixture and its confidences: the same number as with references
            assert entry["quantity"] == with_refs["conditions"][name]["quantity"] > 0
            assert 0 < with_refs["conditions"][name]["quality"] <= 1
    alphas = without["conditions"]
    assert alphas["alpha_0"]["quantity"] == pytest.approx(1.0, abs=1e-5)   # Σ|X|/Σ|X| per mixture
    quantity = [alphas[n]["quantity"] for n in ("alpha_0", "alpha_0_5", "alpha_1", "alpha_2")]
    assert quantity == sorted(quantity, reverse=True) and len(set(quantity)) == 4
    assert [r["id"] for r in rows] == [r["id"] for r in rows_refs]
    assert all(r["alpha_1_quality"] == "nan" for r in rows)
    assert all(np.isfinite(float(r["alpha_1_quality"])) for r in rows_refs)
    assert [r["alpha_1_sum_w"] for r in rows] == [r["alpha_1_sum_w"] for r in rows_refs]


def test_ensemble_model_that_was_not_trained_is_a_one_line_error(shards, tmp_path):
    # a ground-truth condition has no teacher to ensemble with: refused when the file loads
    params = write_params(tmp_path / "params.yaml", ensemble_models=["alpha_1", "gt"])
    with pytest.raises(BootsepError, match=r"params.yaml: evaluate.ensemble_models\[1\] is "
                                           r"'gt', a ground-truth condition"):
        s8_evaluate.main(params, corpus_dir=tmp_path / "corpus", shard_root=shards[False],
                         model_root=tmp_path / "models", out=tmp_path / "eval")
    # a listed model whose folder is a "not trained" marker: refused before anything is scored
    params = write_params(tmp_path / "params.yaml")
    models = tmp_path / "models"
    for name in ("gt", "gt_subset", "alpha_0", "alpha_0_5", "alpha_1"):
        (models / name).mkdir(parents=True, exist_ok=True)
        (models / name / "params.json").write_text(json.dumps({"skipped": NO_REFERENCES}))
    with pytest.raises(BootsepError, match=r"params.yaml: evaluate.ensemble_models names "
                                           r"'alpha_1', which was not trained.*name a spatial"):
        s8_evaluate.main(params, corpus_dir=tmp_path / "corpus", shard_root=shards[False],
                         model_root=models, out=tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
