"""The training loop at tiny scale: it learns, logs, keeps the best model, and resumes exactly."""

from __future__ import annotations

import csv
import os
import signal
from dataclasses import asdict

import pytest
import torch

from bootsep.train.checkpoint import load_checkpoint
from bootsep.train.conditions import Condition
from bootsep.train.dataset import ShardStream
from bootsep.train.inputs import check_inputs, shard_groups
from bootsep.train.loop import (
    BEST_MODEL,
    CHECKPOINT,
    LOG_COLUMNS,
    LOG_CSV,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
)
from bootsep.train.model import ModelConfig, init_model
from bootsep.train.synthetic import TINY_STFT, write_synthetic_corpus

MODEL = ModelConfig(num_freq=TINY_STFT.num_freq, hidden=16, num_layers=1, embedding_dim=4)
GT = Condition("gt", "gt")
A1 = Condition("alpha_1", "spatial", 1.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(root, {"train": 40, "valid": 10}, utterances_per_shard=6,
                           frames=(20, 50), seed=11)
    return root


def make_trainer(root, out, cond=A1, **overrides) -> Trainer:
    cfg = TrainConfig(**{"seed": 0, "epochs": 3, "batch_size": 4, "max_frames": 30, "lr": 3e-3,
                         "loader_workers": 0, "shuffle_buffer": 8, "device": "cpu", **overrides})
    groups, vgroups = shard_groups(cond, "train", root), shard_groups(cond, "valid", root)
    train = ShardStream(groups, cond, TINY_STFT, seed=cfg.seed, max_frames=cfg.max_frames,
                        shuffle_buffer=cfg.shuffle_buffer)
    valid = ShardStream(vgroups, cond, TINY_STFT, seed=cfg.seed, max_frames=None, shuffle=False)
    model = init_model(MODEL, seed=cfg.seed)
    model.set_stats(*check_inputs(groups, cond, TINY_STFT, "check").mean_std())
    meta = {"condition": cond.to_dict(), "model_config": MODEL.to_dict(),
            "stft": asdict(TINY_STFT)}   # what saved_model.load_model checks (tests/test_cuda.py)
    return Trainer(model, cfg, train, valid, out, "fingerprint", meta)


def _fail_at(trainer: Trainer, call: int, action):
    """Run ``action`` on the ``call``-th training batch (1-based); validation is not counted."""
    inner, count = trainer._loss, [0]

    def loss(batch):
        if trainer.model.training:
            count[0] += 1
            if count[0] == call:
                action()
        return inner(batch)

    trainer._loss = loss


def _assert_same_result(a: Trainer, b: Trainer):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    oa, ob = a.optimizer.state_dict(), b.optimizer.state_dict()
    for i in oa["state"]:
        for k in oa["state"][i]:
            assert torch.equal(oa["state"][i][k], ob["state"][i][k]), (i, k)
    assert a.scheduler.state_dict() == b.scheduler.state_dict()
    keys = ("epoch", "train_loss", "valid_loss", "lr", "quantity", "examples", "frames")
    assert [{k: r[k] for k in keys} for r in a.state.history] == \
        [{k: r[k] for k in keys} for r in b.state.history]
    assert a.state.best_valid == b.state.best_valid


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted 3-epoch run of alpha_1."""
    out = tmp_path_factory.mktemp("ref")
    trainer = make_trainer(corpus, out)
    before = trainer.validate()
    trainer.run()
    return trainer, before, out


def test_tiny_run_lowers_validation_loss_and_logs(reference):
    trainer, before, out = reference
    st = trainer.state
    assert st.done and st.epoch == 3 and len(st.history) == 3
    assert st.best_valid < 0.8 * before, (before, [r["valid_loss"] for r in st.history])
    rows = list(csv.DictReader((out / LOG_CSV).open()))
    assert tuple(rows[0]) == LOG_COLUMNS and [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert all(0 < float(r["quantity"]) < 1 for r in rows)     # Σw per example, α = 1
    assert all(float(r["lr"]) == pytest.approx(3e-3) for r in rows)
    best = load_checkpoint(out / BEST_MODEL)
    assert best["valid_loss"] == pytest.approx(st.best_valid)
    assert {"model_state", "model_config", "condition"} <= set(best)
    ckpt = load_checkpoint(out / CHECKPOINT)
    assert ckpt["state"]["done"] and ckpt["state"]["epoch"] == 3


def test_same_seed_gives_byte_identical_model_file(corpus, reference, tmp_path):
    """Determinism down to the bytes DVC hashes (torch.save once embedded the temporary name)."""
    again = make_trainer(corpus, tmp_path)
    again.run()
    assert (tmp_path / BEST_MODEL).read_bytes() == (reference[2] / BEST_MODEL).read_bytes()


def test_gt_condition_learns(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, cond=GT, epochs=2)
    before = trainer.validate()
    trainer.run()
    assert trainer.state.best_valid < 0.8 * before
    assert all(r["quantity"] == pytest.approx(1.0, rel=1e-4) for r in trainer.state.history)


def test_resume_after_sigterm_mid_epoch_reproduces_result(corpus, reference, tmp_path):
    ref = reference[0]
    first = make_trainer(corpus, tmp_path)
    _fail_at(first, 13, lambda: os.kill(os.getpid(), signal.SIGTERM))   # epoch 2, batch 3
    with pytest.raises(TrainingInterrupted, match="signal 15"):
        first.run()
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert (ckpt["state"]["epoch"], ckpt["state"]["position"]) == (1, 3)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL      # handler restored

    resumed = make_trainer(corpus, tmp_path)
    assert resumed.try_resume() and resumed.state.position == 3
    resumed.run()
    _assert_same_result(ref, resumed)


def test_resume_after_crash_uses_epoch_checkpoint(corpus, reference, tmp_path):
    """A hard kill (no chance to save) mid-epoch 3 resumes from the end-of-epoch-2 checkpoint."""
    ref = reference[0]
    first = make_trainer(corpus, tmp_path)

    def crash():
        raise KeyboardInterrupt          # stands in for SIGKILL: nothing is saved

    _fail_at(first, 24, crash)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    resumed = make_trainer(corpus, tmp_path)
    assert resumed.try_resume() and (resumed.state.epoch, resumed.state.position) == (2, 0)
    resumed.run()
    _assert_same_result(ref, resumed)


def test_resume_with_loader_workers(corpus, tmp_path):
    ref = make_trainer(corpus, tmp_path / "ref", epochs=1, loader_workers=2)
    ref.run()
    first = make_trainer(corpus, tmp_path / "cut", epochs=1, loader_workers=2)
    _fail_at(first, 4, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(TrainingInterrupted, match="signal 2"):
        first.run()
    resumed = make_trainer(corpus, tmp_path / "cut", epochs=1, loader_workers=2)
    assert resumed.try_resume()
    resumed.run()
    _assert_same_result(ref, resumed)


def test_foreign_checkpoint_is_not_resumed(corpus, reference, tmp_path):
    trainer = make_trainer(corpus, tmp_path)
    (tmp_path / CHECKPOINT).write_bytes((reference[2] / CHECKPOINT).read_bytes())
    assert trainer.try_resume()
    trainer.fingerprint = "other"
    assert not trainer.try_resume()


def test_max_batches_per_epoch_and_lr_halving(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, epochs=3, max_batches_per_epoch=2, lr=1e-7,
                           lr_patience=0)
    trainer.run()
    assert [r["examples"] for r in trainer.state.history] == [8, 8, 8]
    lrs = [r["lr"] for r in trainer.state.history]
    assert lrs[-1] < lrs[0]          # a flat validation loss halves the learning rate
