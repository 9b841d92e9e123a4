"""A self-training round's student started from the model that relabelled the round
(``train_conditions.rounds.<name>.warm_start``) and trained for its own ``epochs``: it starts
from exactly that model's weights, the relabelling's recorded digest guards against a model
changed since, and every refusal is one line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from test_train_stage import write_params

from bootsep.errors import BootsepError
from bootsep.pipeline.storage.layout import SUMMARY_NAME
from bootsep.stages.s5_train import main
from bootsep.train.checkpoint import load_checkpoint
from bootsep.train.loop import BEST_MODEL, LOG_CSV
from bootsep.train.model import ModelConfig, init_model
from bootsep.train.synthetic import write_synthetic_corpus
from bootsep.train.warm_start import DIGEST_KEY, STUDENT_KEY, file_sha256, load_warm


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Synthetic shards, a trained student ``alpha_1`` and a round ``round_1`` whose shards
    (the paper teacher's, copied) record that student and its model's digest, as relabel does."""
    root = tmp_path_factory.mktemp("warm")
    shards = root / "shards"
    write_synthetic_corpus(shards, {"train": 16, "valid": 8}, utterances_per_shard=8,
                           frames=(20, 40), seed=7)
    models = root / "models"
    main(write_params(root / "params.yaml"), "alpha_1", shard_root=shards, model_root=models)
    for stage in ("spatial", "confidence"):
        shutil.copytree(shards / stage / "paper", shards / stage / "round_1")
    summary = {"stage": "relabel", STUDENT_KEY: "alpha_1",
               DIGEST_KEY: file_sha256(models / "alpha_1" / BEST_MODEL)}
    (shards / "spatial/round_1/train" / SUMMARY_NAME).write_text(json.dumps(summary))
    return shards, models


TINY = ModelConfig(num_freq=17, hidden=16, num_layers=1, embedding_dim=4)   # write_params' model


def round_params(path: Path, **entry) -> Path:
    write_params(path, train={"lr": 1e-9})     # Adam moves each weight by ~lr per step
    params = yaml.safe_load(path.read_text())
    params["train_conditions"]["rounds"] = {
        "round_1_alpha_1": {"teacher": "round_1", "alpha": 1.0, "fraction": 1.0, **entry}}
    path.write_text(yaml.safe_dump(params))
    return path


def weights(folder: Path) -> dict:
    return load_checkpoint(folder / BEST_MODEL)["model_state"]


def test_warm_start_begins_at_the_relabelling_student(workspace, tmp_path):
    shards, models = workspace
    out = tmp_path / "models"
    shutil.copytree(models / "alpha_1", out / "alpha_1")
    main(round_params(tmp_path / "p.yaml", warm_start=True, epochs=1, lr_schedule="cosine"),
         "round_1_alpha_1",
         shard_root=shards, model_root=out)
    student, warm = weights(out / "alpha_1"), weights(out / "round_1_alpha_1")
    for name, value in student.items():          # lr 1e-9 for one epoch: still the student
        torch.testing.assert_close(warm[name], value, atol=1e-6, rtol=0, msg=name)
    fresh = init_model(TINY, 0).state_dict()
    assert (warm["blstm.weight_hh_l0"] - fresh["blstm.weight_hh_l0"]).abs().max() > 1e-3
    rows = (out / "round_1_alpha_1" / LOG_CSV).read_text().splitlines()
    assert len(rows) == 2                         # its own epochs (1), not train.epochs (2)
    meta = load_checkpoint(out / "round_1_alpha_1" / BEST_MODEL)
    assert meta["warm_start"] == {"student": "alpha_1",
                                  "sha256": file_sha256(out / "alpha_1" / BEST_MODEL)}
    assert meta["train"]["epochs"] == 1 and meta["train"]["lr_schedule"] == "cosine"
    assert float(rows[1].split(",")[3]) < 0.5e-9   # cosine: the lr decays (plateau keeps 1e-9)


def test_without_warm_start_the_round_starts_from_the_shared_initialisation(workspace, tmp_path):
    shards, models = workspace
    main(round_params(tmp_path / "p.yaml", epochs=1), "round_1_alpha_1", shard_root=shards,
         model_root=tmp_path / "models")
    cold = weights(tmp_path / "models/round_1_alpha_1")
    fresh = init_model(TINY, 0).state_dict()
    torch.testing.assert_close(cold["blstm.weight_hh_l0"], fresh["blstm.weight_hh_l0"],
                               atol=1e-6, rtol=0)
    assert "warm_start" not in load_checkpoint(tmp_path / "models/round_1_alpha_1" / BEST_MODEL)


def _refused(params, shards, models, match):
    with pytest.raises(BootsepError, match=match) as info:
        main(params, "round_1_alpha_1", shard_root=shards, model_root=models)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert not (models / "round_1_alpha_1" / LOG_CSV).exists()     # nothing trained
    return message


def test_a_student_model_changed_since_the_relabelling_is_refused(workspace, tmp_path):
    shards, models = workspace
    out = tmp_path / "models"
    shutil.copytree(models / "alpha_1", out / "alpha_1")
    state = load_checkpoint(out / "alpha_1" / BEST_MODEL)
    state["valid_loss"] = 123.0
    torch.save(state, out / "alpha_1" / BEST_MODEL)
    message = _refused(round_params(tmp_path / "p.yaml", warm_start=True), shards, out,
                       "changed since the round was relabelled")
    assert str(out / "alpha_1" / BEST_MODEL) in message


def test_a_missing_student_model_is_refused(workspace, tmp_path):
    shards, _ = workspace
    message = _refused(round_params(tmp_path / "p.yaml", warm_start=True), shards,
                       tmp_path / "models", "is missing")
    assert "alpha_1" in message


def test_shards_that_record_no_student_are_refused(workspace, tmp_path):
    shards, models = workspace
    copy = tmp_path / "shards"
    shutil.copytree(shards, copy)
    summary = copy / "spatial/round_1/train" / SUMMARY_NAME
    summary.write_text(json.dumps({"stage": "relabel"}))
    message = _refused(round_params(tmp_path / "p.yaml", warm_start=True), copy, models,
                       "no student")
    assert str(summary) in message


def test_a_student_with_another_input_norm_is_refused(workspace, tmp_path):
    """Same weight shapes, another network: model.input_norm changed since the relabelling."""
    shards, models = workspace
    params = round_params(tmp_path / "p.yaml", warm_start=True)
    raw = yaml.safe_load(params.read_text())
    raw["model"]["input_norm"] = "utterance"
    params.write_text(yaml.safe_dump(raw))
    message = _refused(params, shards, models, "is not this condition's")
    assert "input_norm='global'" in message and "input_norm='utterance'" in message
    assert str(models / "alpha_1" / BEST_MODEL) in message


def test_weights_of_another_model_size_are_one_line(tmp_path):
    small = init_model(ModelConfig(num_freq=17, hidden=8, num_layers=1, embedding_dim=4), 0)
    with pytest.raises(BootsepError, match="do not fit") as info:
        load_warm(init_model(TINY, 0), small.state_dict(), tmp_path / "model.pt")
    assert "\n" not in str(info.value) and str(tmp_path / "model.pt") in str(info.value)


@pytest.mark.parametrize("group", ["gt", "spatial"])
def test_warm_start_is_a_rounds_key_only(workspace, tmp_path, group):
    shards, models = workspace
    path = write_params(tmp_path / "p.yaml")
    params = yaml.safe_load(path.read_text())
    name = "gt" if group == "gt" else "alpha_1"
    params["train_conditions"][group][name]["warm_start"] = True
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(BootsepError, match="warm_start"):
        main(path, name, shard_root=shards, model_root=tmp_path / "models")
