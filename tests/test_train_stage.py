"""The ``train`` stage: end to end on synthetic shards, one-line errors on bad input before any
training, a real process interrupted by a signal that resumes to the uninterrupted result,
identical retrains that write identical model folders (timings kept apart), and a clean
restart from a damaged checkpoint or best model."""

from __future__ import annotations

import csv
import json
import logging
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
from bootsep.smoke import prepare_workspace
from bootsep.stages.s5_train import PARAMS, RUN_PARAMS, main, timing_path
from bootsep.train.checkpoint import load_checkpoint
from bootsep.train.loop import BEST_MODEL, CHECKPOINT, LOG_CSV, Trainer
from bootsep.train.synthetic import write_synthetic_corpus

N_TRAIN = 40


def write_params(path: Path, train: dict | None = None, spatial: dict | None = None,
                 window_ms: float = 4, dropout: float = 0.0, num_layers: int = 1) -> Path:
    params = {
        "stft": {"sample_rate": 8000, "window_ms": window_ms, "hop_ms": 1, "window": "hann",
                 "pair_channels": [1], "seed": 1},
        "model": {"size": "tiny", "dropout": dropout,
                  "sizes": {"tiny": {"hidden": 16, "num_layers": num_layers,
                                     "embedding_dim": 4}}},
        "train": {"seed": 0, "epochs": 2, "batch_size": 4, "max_frames": 30, "lr": 3e-3,
                  "lr_patience": 5, "lr_factor": 0.5, "grad_clip": 5.0, "loader_workers": 0,
                  "shuffle_buffer": 8, "bucket": True, "torch_threads": 1, "device": "cpu",
                  "amp": False,
                  "max_batches_per_epoch": None, "num_sources": 2, **(train or {})},
        "train_conditions": {"gt": {"gt": {"fraction": 1.0}, "gt_subset": {"fraction": 0.25}},
                             "spatial": spatial or {
                                 "alpha_0": {"teacher": "paper", "alpha": 0.0, "fraction": 1.0},
                                 "alpha_1": {"teacher": "paper", "alpha": 1.0, "fraction": 1.0}},
                             "rounds": {}},
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
    best = load_checkpoint(tmp_path / "models/gt_subset" / BEST_MODEL)
    assert best["train_mixtures"] == N_TRAIN // 4
    rows = list(csv.DictReader((tmp_path / "models/gt_subset" / LOG_CSV).open()))
    assert sum(int(r["examples"]) for r in rows) == 2 * N_TRAIN // 4


@pytest.mark.parametrize("group,name", [("gt", "gt_subset"), ("spatial", "alpha_1")])
def test_a_condition_trains_its_own_epochs_and_schedule(corpus, tmp_path, group, name):
    params = write_params(tmp_path / "params.yaml")          # train.epochs 2, plateau
    raw = yaml.safe_load(params.read_text())
    raw["train_conditions"][group][name].update(epochs=3, lr_schedule="cosine",
                                                utterance_weighting="linear")
    params.write_text(yaml.safe_dump(raw))
    main(params, name, shard_root=corpus, model_root=tmp_path / "models")
    rows = list(csv.DictReader((tmp_path / "models" / name / LOG_CSV).open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] > lrs[1] > lrs[2]                           # cosine decays every epoch
    best = load_checkpoint(tmp_path / "models" / name / BEST_MODEL)
    assert best["train"]["epochs"] == 3 and best["train"]["lr_schedule"] == "cosine"
    assert best["condition"]["epochs"] == 3
    assert best["train"]["utterance_weighting"] == "linear"


def _corrupt(root: Path, tmp_path: Path, stage: str, name: str, value) -> Path:
    copy = tmp_path / "shards"
    shutil.copytree(root, copy)
    folder = copy / stage / "train" if stage == "stft" else copy / stage / "paper" / "train"
    with h5py.File(folder / "shard-00002.h5", "r+") as f:
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
    shutil.rmtree(root / "confidence" / "paper" / "train")
    params = write_params(tmp_path / "params.yaml")
    _bad_input(params, "alpha_1", root, tmp_path / "models", "confidence.*not found")
    main(params, "gt", shard_root=root, model_root=tmp_path / "models")   # gt does not need it


def test_negative_alpha_stops_its_own_condition_only(corpus, tmp_path):
    """Each train stage reads its own train_conditions entry (its DVC params) and no other."""
    params = write_params(tmp_path / "params.yaml",
                          spatial={"alpha_1": {"teacher": "paper", "alpha": 1.0, "fraction": 1.0},
                                   "alpha_neg": {"teacher": "paper", "alpha": -0.5,
                                                 "fraction": 1.0}})
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
    a, b = root / "spatial/paper/train/shard-00000.h5", root / "spatial/paper/train/shard-00001.h5"
    a.rename(tmp_path / "x.h5")
    b.rename(a)
    (tmp_path / "x.h5").rename(b)
    params = write_params(tmp_path / "params.yaml")
    _bad_input(params, "alpha_1", root, tmp_path / "models", "do not line up")


def test_bad_train_params(corpus, tmp_path):
    params = write_params(tmp_path / "params.yaml", train={"batch_size": 0})
    _bad_input(params, "gt", corpus, tmp_path / "models", "train.batch_size")


# -- reproducible outputs ---------------------------------------------------------------------

MODEL_FILES = {BEST_MODEL, CHECKPOINT, LOG_CSV, "metrics.json", "params.json"}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_identical_retrains_write_identical_model_folders(corpus, tmp_path):
    """The DVC digest of data/models is that of its files: a retrain over the finished run,
    and a run elsewhere on a copy of the shards (other paths, other modification times),
    give the very same bytes; the wall-clock times are in the timing file outside it."""
    params = write_params(tmp_path / "params.yaml", dropout=0.3, num_layers=2)
    first = tmp_path / "a" / "models"
    main(params, "alpha_1", shard_root=corpus, model_root=first)
    ref = _folder_bytes(first / "alpha_1")
    assert set(ref) == MODEL_FILES
    main(params, "alpha_1", shard_root=corpus, model_root=first)       # DVC retrains in place
    assert _folder_bytes(first / "alpha_1") == ref

    shards = tmp_path / "shards"
    shutil.copytree(corpus, shards)
    for p in shards.rglob("*"):
        os.utime(p, ns=(1_000_000_000, 1_000_000_000))
    other = tmp_path / "b" / "models"
    main(params, "alpha_1", shard_root=shards, model_root=other)
    assert _folder_bytes(other / "alpha_1") == ref

    timing = json.loads(timing_path(first, "alpha_1").read_text())
    assert timing_path(first, "alpha_1") == tmp_path / "a" / "timing" / "alpha_1.json"
    assert timing["condition"] == "alpha_1" and timing["train_seconds"] > 0
    log = list(csv.DictReader((first / "alpha_1" / LOG_CSV).open()))
    assert [r["epoch"] for r in timing["epochs"]] == [1, 2]
    assert [r["frames"] for r in timing["epochs"]] == [int(r["frames"]) for r in log]
    assert all(r["seconds"] > 0 and r["frames_per_s"] > 0 for r in timing["epochs"])
    metrics = json.loads((first / "alpha_1" / "metrics.json").read_text())
    assert not [k for k in metrics if "second" in k or "per_s" in k]


@pytest.mark.slow
def test_dvc_forced_retrain_leaves_data_models_consumers_up_to_date(tmp_path):
    """DVC itself, with the repository's dvc.yaml: after `dvc repro -f` of a train stage with
    unchanged parameters, a stage depending on data/models (as evaluate and report do) is
    still up to date, i.e. the folder's digest did not change."""
    ws = prepare_workspace(tmp_path / "ws")
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["stft"].update({"window_ms": 4, "hop_ms": 1})        # the synthetic shards' STFT
    params["model"]["dropout"] = 0.3
    params["model"]["sizes"]["tiny"]["num_layers"] = 2
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_synthetic_corpus(ws / "data/shards", {"train": 24, "valid": 8}, utterances_per_shard=8,
                           frames=(20, 50), seed=5)
    pipeline = yaml.safe_load((ws / "dvc.yaml").read_text())
    pipeline["stages"]["consumer"] = {"cmd": "ls -R data/models > seen.txt",
                                      "deps": ["data/models"], "outs": ["seen.txt"]}
    (ws / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def dvc(*args):
        proc = subprocess.run(["dvc", *args], cwd=ws, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc.stdout

    dvc("repro", "-s", "train_spatial@alpha_1")
    dvc("repro", "-s", "consumer")
    before = (ws / "data/models/alpha_1/model.pt").read_bytes()
    dvc("repro", "-s", "-f", "train_spatial@alpha_1")
    assert (ws / "data/timing/alpha_1.json").is_file()
    assert (ws / "data/models/alpha_1/model.pt").read_bytes() == before
    assert "up to date" in dvc("status", "consumer")


# -- damaged files: one warning naming the file, then a clean run ------------------------------

def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(scope="module")
def clean_gt_subset(corpus, tmp_path_factory):
    """gt_subset trained once without trouble: the bytes every restart must reproduce."""
    root = tmp_path_factory.mktemp("clean")
    main(write_params(root / "params.yaml"), "gt_subset", shard_root=corpus,
         model_root=root / "models")
    return _folder_bytes(root / "models" / "gt_subset")


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "not_a_dict"])
def test_damaged_checkpoint_is_named_and_training_restarts(corpus, clean_gt_subset, tmp_path,
                                                           caplog, damage):
    out = tmp_path / "models" / "gt_subset"
    out.mkdir(parents=True)
    ckpt = out / CHECKPOINT
    if damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "truncated":
        ckpt.write_bytes(clean_gt_subset[CHECKPOINT][: len(clean_gt_subset[CHECKPOINT]) // 2])
    elif damage == "garbage":
        ckpt.write_bytes(np.random.default_rng(0).bytes(5000))
    else:
        torch.save([1, 2, 3], ckpt)
    params = write_params(tmp_path / "params.yaml")
    main(params, "gt_subset", shard_root=corpus, model_root=tmp_path / "models")
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and str(ckpt) in warnings[0], warnings
    assert "from scratch" in warnings[0] and "\n" not in warnings[0]
    assert _folder_bytes(out) == clean_gt_subset


def _killed_after_first_epoch(params, corpus, model_root, monkeypatch) -> None:
    """gt_subset stopped right after epoch 1's checkpoint (a kill: nothing else is saved)."""
    save = Trainer._save

    def save_then_die(self):
        save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        main(params, "gt_subset", shard_root=corpus, model_root=model_root)
    monkeypatch.undo()


def test_damaged_best_model_when_resuming_restarts(corpus, clean_gt_subset, tmp_path, caplog,
                                                   monkeypatch):
    """Killed after epoch 1 (checkpoint to resume from, model.pt of epoch 1); model.pt then
    truncated: the rerun names it, starts afresh and gives the clean run's bytes."""
    params = write_params(tmp_path / "params.yaml")
    _killed_after_first_epoch(params, corpus, tmp_path / "models", monkeypatch)
    out = tmp_path / "models" / "gt_subset"
    assert load_checkpoint(out / CHECKPOINT)["state"]["epoch"] == 1
    best = out / BEST_MODEL
    best.write_bytes(best.read_bytes()[:300])
    caplog.set_level(logging.INFO, logger="bootsep")
    caplog.clear()
    main(params, "gt_subset", shard_root=corpus, model_root=tmp_path / "models")
    warnings = _warnings(caplog)
    assert len(warnings) == 1 and str(best) in warnings[0], warnings
    assert "resuming" not in caplog.text and "best valid loss" in caplog.text
    assert _folder_bytes(out) == clean_gt_subset


def test_intact_checkpoint_resumes_to_the_clean_result(corpus, clean_gt_subset, tmp_path, caplog,
                                                       monkeypatch):
    """The control for the test above: nothing damaged, the rerun resumes (no warning)."""
    params = write_params(tmp_path / "params.yaml")
    _killed_after_first_epoch(params, corpus, tmp_path / "models", monkeypatch)
    caplog.set_level(logging.INFO, logger="bootsep")
    caplog.clear()
    main(params, "gt_subset", shard_root=corpus, model_root=tmp_path / "models")
    assert "gt_subset: resuming after epoch 1" in caplog.text and not _warnings(caplog)
    assert _folder_bytes(tmp_path / "models" / "gt_subset") == clean_gt_subset


# -- a real process, interrupted ------------------------------------------------------------

RUN = ("import sys; from bootsep.cli import configure_logging; configure_logging(); "
       "from bootsep.stages.s5_train import main; "
       "main(sys.argv[1], 'alpha_1', sys.argv[2], sys.argv[3])")


def _run(params, corpus, models, **kw):
    return subprocess.Popen([sys.executable, "-c", RUN, str(params), str(corpus), str(models)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def test_process_interrupted_by_signal_resumes_to_same_result(corpus, tmp_path):
    """Ctrl-C to the whole process group (loader worker included) mid-run; rerun finishes it.
    With dropout between two layers: its draws are seeded per batch, so the resume is exact."""
    params = write_params(tmp_path / "params.yaml", train={"epochs": 5, "loader_workers": 1},
                          dropout=0.3, num_layers=2)
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
    assert "warning: train alpha_1: interrupted by signal" in err and "rerun to resume" in err
    state = load_checkpoint(tmp_path / "cut" / "alpha_1" / CHECKPOINT)["state"]
    assert not state["done"] and state["epoch"] < 5

    again = _run(params, corpus, tmp_path / "cut")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err[-2000:]
    assert "train alpha_1: resuming after epoch" in err and out == ""
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
    assert _folder_bytes(tmp_path / "ref" / "alpha_1") == \
        _folder_bytes(tmp_path / "cut" / "alpha_1")


def test_code_digest_sees_every_file_of_the_packages(tmp_path, monkeypatch):
    """A resume is refused after a change anywhere in the code training runs, e.g. in
    pipeline/ (eq. 7's confidence), not only in train/ (the digest once hashed train/ only)."""
    from bootsep.train.inputs import code_digest

    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "weights.py").write_text("ALPHA = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_digest(("fakepkg",))
    assert code_digest(("fakepkg",)) == first                     # deterministic
    (pkg / "sub" / "weights.py").write_text("ALPHA = 2\n")
    assert code_digest(("fakepkg",)) != first                     # a nested file counts
    assert code_digest() == code_digest()

