"""The ``train`` stage: end to end on synthetic shards, one-line errors on bad input before any
training, and a real process interrupted by a signal that resumes to the uninterrupted result."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from bootsep.config import load_config
from bootsep.errors import BootsepError
from bootsep.stages.s5_train import PARAMS, RUN_PARAMS, main
from bootsep.train.checkpoint import load_checkpoint
from bootsep.train.loop import BEST_MODEL, CHECKPOINT, LOG_CSV
from bootsep.train.synthetic import write_synthetic_corpus

N_TRAIN = 40


def write_params(path: Path, train: dict | None = None, spatial: dict | None = None,
                 window_ms: float = 4) -> Path:
    params = {
        "stft": {"sample_rate": 8000, "window_ms": window_ms, "hop_ms": 1, "window": "hann",
                 "pair_channels": [1], "seed": 1},
        "model": {"size": "tiny", "dropout": 0.0,
                  "sizes": {"tiny": {"hidden": 16, "num_layers": 1, "embedding_dim": 4}}},
        "train": {"seed": 0, "epochs": 2, "batch_size": 4, "max_frames": 30, "lr": 3e-3,
                  "lr_patience": 5, "lr_factor": 0.5, "grad_clip": 5.0, "loader_workers": 0,
                  "shuffle_buffer": 8, "torch_threads": 1, "device": "cpu", "amp": False,
                  "max_batches_per_epoch": None, "num_sources": 2, **(train or {})},
        "train_conditions": {"gt": {"gt": {"fraction": 1.0}, "gt_subset": {"fraction": 0.25}},
                             "spatial": spatial or {"alpha_0": {"alpha": 0.0, "fraction": 1.0},
                                                    "alpha_1": {"alpha": 1.0, "fraction": 1.0}}},
    }
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_synthetic_corpus(root, {"train": N_TRAIN, "valid": 8}, utterances_per_shard=8,
                           frames=(20, 50), seed=5)
    return root


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_stage_trains_gt_subset_and_alpha(corpus, tmp_path):
    params = write_params(tmp_path / "params.yaml")
    for name in ("gt_subset", "alpha_1"):
        main(params, name, shard_root=corpus, model_root=tmp_path / "models")
        out = tmp_path / "models" / name
        for f in (BEST_MODEL, CHECKPOINT, LOG_CSV, "metrics.json", "params.json"):
            assert (out / f).is_file(), f
        best = load_checkpoint(out / BEST_MODEL)
        assert best["condition"]["name"] == name
        assert not torch.equal(best["model_state"]["normalizer.mean"], torch.zeros(17))
    assert load_checkpoint(tmp_path / "models/gt_subset" / BEST_MODEL)["train_mixtures"] == N_TRAIN // 4
    rows = list(csv.DictReader((tmp_path / "models/gt_subset" / LOG_CSV).open()))
    assert sum(int(r["examples"]) for r in rows) == 2 * N_TRAIN // 4


def _corrupt(root: Path, tmp_path: Path, stage: str, name: str, value) -> Path:
    copy = tmp_path / "shards"
    shutil.copytree(root, copy)
    with h5py.File(copy / stage / "train" / "shard-00002.h5", "r+") as f:
        data = f[name][()]
        data.flat[data.size // 2] = value
        f[name][...] = data
    return copy


def _bad_input(params, condition, shard_root, model_root, match):
    with pytest.raises(BootsepError, match=match) as info:
        main(params, condition, shard_root=shard_root, model_root=model_root)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    out = Path(model_root) / condition
    assert not (out / CHECKPOINT).exists() and not (out / LOG_CSV).exists()   # never trained
    return message


def test_shards_from_another_stft_config(corpus, tmp_path):
    params = write_params(tmp_path / "params.yaml", window_ms=8)
    msg = _bad_input(params, "alpha_1", corpus, tmp_path / "models", "current config")
    assert "rerun the pipeline" in msg


def test_missing_confidence_shard_set(corpus, tmp_path):
    root = tmp_path / "shards"
    shutil.copytree(corpus, root)
    shutil.rmtree(root / "confidence" / "train")
    params = write_params(tmp_path / "params.yaml")
    _bad_input(params, "alpha_1", root, tmp_path / "models", "confidence.*not found")
    main(params, "gt", shard_root=root, model_root=tmp_path / "models")   # gt does not need it


def test_negative_alpha_stops_its_own_condition_only(corpus, tmp_path):
    """Each train stage reads its own train_conditions entry (its DVC params) and no other."""
    params = write_params(tmp_path / "params.yaml",
                          spatial={"alpha_1": {"alpha": 1.0, "fraction": 1.0},
                                   "alpha_neg": {"alpha": -0.5, "fraction": 1.0}})
    _bad_input(params, "alpha_neg", corpus, tmp_path / "models",
               r"train_conditions.spatial.alpha_neg.alpha is -0.5; expected a number >= 0")
    cfg = load_config(params, PARAMS + RUN_PARAMS, condition="alpha_1")
    assert cfg.train_conditions.spatial["alpha_1"].alpha == 1.0


def test_nan_in_features(corpus, tmp_path):
    root = _corrupt(corpus, tmp_path, "stft", "mix_logmag_db", np.nan)
    params = write_params(tmp_path / "params.yaml")
    _bad_input(params, "gt", root, tmp_path / "models", "shard-00002.h5: features .* NaN")


def test_nan_in_confidence(corpus, tmp_path):
    root = _corrupt(corpus, tmp_path, "confidence", "c_post", np.nan)
    params = write_params(tmp_path / "params.yaml")
    _bad_input(params, "alpha_1", root, tmp_path / "models", "c_post contains NaN")


def test_label_out_of_range(corpus, tmp_path):
    root = _corrupt(corpus, tmp_path, "spatial", "labels", 3)
    params = write_params(tmp_path / "params.yaml")
    _bad_input(params, "alpha_0", root, tmp_path / "models", "label 3 .*num_sources is 2")


def test_misaligned_shard_sets(corpus, tmp_path):
    root = tmp_path / "shards"
    shutil.copytree(corpus, root)
    a, b = root / "spatial/train/shard-00000.h5", root / "spatial/train/shard-00001.h5"
    a.rename(tmp_path / "x.h5")
    b.rename(a)
    (tmp_path / "x.h5").rename(b)
    params = write_params(tmp_path / "params.yaml")
    _bad_input(params, "alpha_1", root, tmp_path / "models", "do not line up")


def test_bad_train_params(corpus, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"batch_size": 0})
    _bad_input(params, "gt", corpus, tmp_path / "models", "train.batch_size")


# -- a real process, interrupted ------------------------------------------------------------

RUN = ("import sys; from bootsep.stages.s5_train import main; "
       "main(sys.argv[1], 'alpha_1', sys.argv[2], sys.argv[3])")


def _run(params, corpus, models, **kw):
    return subprocess.Popen([sys.executable, "-c", RUN, str(params), str(corpus), str(models)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def test_process_interrupted_by_signal_resumes_to_same_result(corpus, tmp_path):
    """Ctrl-C to the whole process group (loader worker included) mid-run; rerun finishes it."""
    params = write_params(tmp_path / "params.yaml", train={"epochs": 5, "loader_workers": 1})
    ref = _run(params, corpus, tmp_path / "ref")
    cut = _run(params, corpus, tmp_path / "cut")
    log = tmp_path / "cut" / "alpha_1" / LOG_CSV
    deadline = time.time() + 60
    while not log.exists() and cut.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert cut.poll() is None, cut.communicate()[1][-2000:]
    os.killpg(cut.pid, signal.SIGINT)
    _, err = cut.communicate(timeout=60)
    assert cut.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "rerun to resume" in err
    state = load_checkpoint(tmp_path / "cut" / "alpha_1" / CHECKPOINT)["state"]
    assert not state["done"] and state["epoch"] < 5

    again = _run(params, corpus, tmp_path / "cut")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    assert "resuming after epoch" in out
    _, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err[-2000:]

    a = load_checkpoint(tmp_path / "ref" / "alpha_1" / CHECKPOINT)
    b = load_checkpoint(tmp_path / "cut" / "alpha_1" / CHECKPOINT)
    assert a["state"]["done"] and b["state"]["done"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    keys = ("train_loss", "valid_loss", "lr", "quantity", "examples", "frames")
    assert [[r[k] for k in keys] for r in a["state"]["history"]] == \
        [[r[k] for k in keys] for r in b["state"]["history"]]
    ma = load_checkpoint(tmp_path / "ref" / "alpha_1" / BEST_MODEL)["model_state"]
    mb = load_checkpoint(tmp_path / "cut" / "alpha_1" / BEST_MODEL)["model_state"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
