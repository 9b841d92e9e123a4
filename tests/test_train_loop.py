"""The training loop at tiny scale: it learns, logs, keeps the best model, resumes exactly
(dropout included), and restarts cleanly from a damaged checkpoint or best model."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sys
from dataclasses import asdict

import pytest
import torch

from bootsep.errors import BootsepError
from bootsep.train.checkpoint import load_checkpoint, save_checkpoint
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
    resolve_loader_workers,
)
from bootsep.train.model import ModelConfig, init_model
from bootsep.train.schedule import cosine_lr
from bootsep.train.synthetic import TINY_STFT, write_synthetic_corpus

MODEL = ModelConfig(num_freq=TINY_STFT.num_freq, hidden=16, num_layers=1, embedding_dim=4)
# two layers: nn.LSTM applies dropout between layers only
DROPOUT = ModelConfig(num_freq=TINY_STFT.num_freq, hidden=16, num_layers=2, embedding_dim=4,
                      dropout=0.3)
GT = Condition("gt", "gt")
A1 = Condition("alpha_1", "spatial", 1.0, teacher="paper")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(root, {"train": 40, "valid": 10}, utterances_per_shard=6,
                           frames=(20, 50), seed=11)
    return root


def make_trainer(root, out, cond=A1, model_cfg=MODEL, data_seed=None, timing=None,
                 **overrides) -> Trainer:
    """``data_seed``: seed of the initial weights and the data stream (default: train.seed),
    so that a test can vary train.seed alone."""
    cfg = TrainConfig(**{"seed": 0, "epochs": 3, "batch_size": 4, "max_frames": 30, "lr": 3e-3,
                         "loader_workers": 0, "shuffle_buffer": 8, "device": "cpu", **overrides})
    data_seed = cfg.seed if data_seed is None else data_seed
    groups, vgroups = shard_groups(cond, "train", root), shard_groups(cond, "valid", root)
    train = ShardStream(groups, cond, TINY_STFT, seed=data_seed, max_frames=cfg.max_frames,
                        shuffle_buffer=cfg.shuffle_buffer)
    valid = ShardStream(vgroups, cond, TINY_STFT, seed=data_seed, max_frames=None, shuffle=False)
    model = init_model(model_cfg, seed=data_seed)
    model.set_stats(*check_inputs(groups, cond, TINY_STFT, "check").mean_std())
    meta = {"condition": cond.to_dict(), "model_config": model_cfg.to_dict(),
            "stft": asdict(TINY_STFT)}   # what saved_model.load_model checks (tests/test_cuda.py)
    return Trainer(model, cfg, train, valid, out, "fingerprint", meta, timing)


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


def test_equal_states_give_equal_checkpoint_bytes(tmp_path):
    """Pickle refers back to repeated objects by identity: a state resumed from disk (strings
    read back, not Python's interned ones) must still give the bytes of one built in memory."""
    eps = "".join(["e", "ps"])                    # equal to "eps", another object
    assert eps == "eps" and eps is not sys.intern("eps")
    built = {"optimizer": {"eps": 1e-8}, "scheduler": {"eps": 1e-8}, "w": torch.ones(2)}
    loaded = {"optimizer": {eps: 1e-8}, "scheduler": {"eps": 1e-8}, "w": torch.ones(2)}
    save_checkpoint(tmp_path / "a.pt", built)
    save_checkpoint(tmp_path / "b.pt", loaded)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


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


@pytest.mark.parametrize("bucket", [True, False])
def test_resume_with_loader_workers(corpus, tmp_path, bucket):
    ref = make_trainer(corpus, tmp_path / "ref", epochs=1, loader_workers=2, bucket=bucket)
    ref.run()
    first = make_trainer(corpus, tmp_path / "cut", epochs=1, loader_workers=2, bucket=bucket)
    _fail_at(first, 4, lambda: os.kill(os.getpid(), signal.SIGINT))
    with pytest.raises(TrainingInterrupted, match="signal 2"):
        first.run()
    resumed = make_trainer(corpus, tmp_path / "cut", epochs=1, loader_workers=2, bucket=bucket)
    assert resumed.try_resume()
    resumed.run()
    _assert_same_result(ref, resumed)


def test_bucket_setting_reaches_the_training_batches(corpus, tmp_path):
    """train.bucket changes which examples share a batch (less padding), not which are seen;
    the setting is part of the fingerprint's meta, so a run is never resumed across it."""
    seen = {}
    for bucket in (True, False):
        trainer = make_trainer(corpus, tmp_path / str(bucket), epochs=1, bucket=bucket,
                               max_frames=None, shuffle_buffer=40)
        batches, inner = [], trainer._loss

        def loss(batch, inner=inner, batches=batches):
            batches.append((list(batch["ids"]), batch["mask"].float().mean().item()))
            return inner(batch)

        trainer._loss = loss
        trainer.run()
        n = trainer.train_stream.num_batches(4, 0)
        seen[bucket] = batches[:n]                     # the training batches (then validation)
    ids = {k: sorted(i for b, _ in v for i in b) for k, v in seen.items()}
    assert ids[True] == ids[False] and len(ids[True]) == 40
    assert [b for b, _ in seen[True]] != [b for b, _ in seen[False]]
    fill = {k: sum(f * len(b) for b, f in v) / 40 for k, v in seen.items()}   # real share
    assert 1 - fill[True] < (1 - fill[False]) / 3, fill


def _interrupt(corpus, out, call, **kw) -> None:
    """A run stopped by SIGTERM at training batch ``call`` (1-based): checkpoint saved."""
    first = make_trainer(corpus, out, **kw)
    _fail_at(first, call, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted):
        first.run()


def test_foreign_checkpoint_is_not_resumed(corpus, tmp_path):
    _interrupt(corpus, tmp_path, 13)
    trainer = make_trainer(corpus, tmp_path)
    assert trainer.try_resume()
    trainer = make_trainer(corpus, tmp_path)
    trainer.fingerprint = "other"
    assert not trainer.try_resume() and trainer.state.epoch == 0
    assert (tmp_path / CHECKPOINT).is_file()          # not damaged: left for the caller


def test_finished_checkpoint_has_no_fingerprint_and_is_not_resumed(reference, corpus):
    """The fingerprint holds input mtimes and the code digest; a finished run keeps none of it,
    so an identical retrain writes the same bytes (and a finished run is never continued)."""
    ckpt = load_checkpoint(reference[2] / CHECKPOINT)
    assert ckpt["state"]["done"] and ckpt["fingerprint"] is None
    assert not make_trainer(corpus, reference[2]).try_resume()


def test_log_and_checkpoint_hold_no_timings_the_timing_file_does(corpus, tmp_path):
    timing = tmp_path / "timing" / "a1.json"
    trainer = make_trainer(corpus, tmp_path / "model", epochs=2, timing=timing)
    trainer.run()
    header = (tmp_path / "model" / LOG_CSV).read_text().splitlines()[0]
    assert header == "epoch,train_loss,valid_loss,lr,quantity,examples,frames"
    state = load_checkpoint(tmp_path / "model" / CHECKPOINT)["state"]
    assert "seconds" not in state["sums"] and all("seconds" not in r for r in state["history"])
    data = json.loads(timing.read_text())
    assert [r["epoch"] for r in data["epochs"]] == [1, 2]
    assert [r["frames"] for r in data["epochs"]] == [r["frames"] for r in trainer.state.history]
    assert all(r["seconds"] > 0 and r["frames_per_s"] > 0 for r in data["epochs"])
    assert data["train_seconds"] == pytest.approx(sum(r["seconds"] for r in data["epochs"]))


def test_resumed_run_keeps_earlier_epochs_timing(corpus, tmp_path):
    timing = tmp_path / "timing.json"
    _interrupt(corpus, tmp_path, 13, timing=timing)                 # epoch 2, batch 3
    resumed = make_trainer(corpus, tmp_path, timing=timing)
    assert resumed.try_resume()
    resumed.run()
    rows = json.loads(timing.read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    full = rows[0]["batches"]
    assert rows[1]["batches"] == full - 3 and rows[2]["batches"] == full   # timed after resume


# -- dropout: seeded from train.seed, exact on resume ----------------------------------------

def _weights(trainer: Trainer) -> dict:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def _differ(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def dropout_reference(corpus, tmp_path_factory):
    """An uninterrupted 2-epoch run with dropout 0.3, started from one global RNG state."""
    torch.manual_seed(1)
    trainer = make_trainer(corpus, tmp_path_factory.mktemp("dropout"), model_cfg=DROPOUT,
                           epochs=2)
    trainer.run()
    return trainer


def test_dropout_is_active_and_independent_of_the_global_rng(corpus, dropout_reference, tmp_path):
    no_dropout = ModelConfig(**{**DROPOUT.to_dict(), "dropout": 0.0})
    plain = make_trainer(corpus, tmp_path / "plain", model_cfg=no_dropout, epochs=2)
    plain.run()
    assert _differ(_weights(plain), _weights(dropout_reference))     # dropout does something
    torch.manual_seed(12345)
    before = torch.get_rng_state()
    again = make_trainer(corpus, tmp_path / "again", model_cfg=DROPOUT, epochs=2)
    again.run()
    _assert_same_result(dropout_reference, again)
    assert torch.equal(torch.get_rng_state(), before)                 # global RNG untouched


def test_dropout_resume_after_sigterm_mid_epoch_is_exact(corpus, dropout_reference, tmp_path):
    torch.manual_seed(2)
    _interrupt(corpus, tmp_path, 13, model_cfg=DROPOUT, epochs=2)     # epoch 2, batch 3
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert (ckpt["state"]["epoch"], ckpt["state"]["position"]) == (1, 3)
    torch.rand(7)                                                     # the global RNG moves on
    resumed = make_trainer(corpus, tmp_path, model_cfg=DROPOUT, epochs=2)
    assert resumed.try_resume()
    resumed.run()
    _assert_same_result(dropout_reference, resumed)
    assert (tmp_path / BEST_MODEL).read_bytes() == \
        (dropout_reference.out_dir / BEST_MODEL).read_bytes()


def test_dropout_draws_depend_on_train_seed(corpus, tmp_path):
    """Same initial weights and data stream; only train.seed differs: with dropout the weights
    differ, without dropout they do not (train.seed reaches the loop only through dropout)."""
    runs = {}
    for dropout in (0.3, 0.0):
        cfg = ModelConfig(**{**DROPOUT.to_dict(), "dropout": dropout})
        for seed in (0, 1):
            t = make_trainer(corpus, tmp_path / f"{dropout}-{seed}", model_cfg=cfg, data_seed=0,
                             seed=seed, epochs=1, max_batches_per_epoch=3)
            t.run()
            runs[dropout, seed] = _weights(t)
    assert _differ(runs[0.3, 0], runs[0.3, 1])
    assert not _differ(runs[0.0, 0], runs[0.0, 1])


# -- damaged files: a warning naming the file, a clean restart -------------------------------

def _fresh_weights(corpus, tmp_path) -> dict:
    return _weights(make_trainer(corpus, tmp_path / "fresh"))


def _one_warning(caplog, name: str) -> str:
    err = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(err) == 1, err
    assert name in err[0] and "from scratch" in err[0] and "\n" not in err[0], err[0]
    return err[0]


def test_checkpoint_that_does_not_fit_restarts_cleanly(corpus, reference, tmp_path, caplog):
    """Readable, this run's fingerprint, but not applicable (a key missing): the trainer is
    left as built (fresh weights) and the fresh run gives the reference result."""
    _interrupt(corpus, tmp_path, 13)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    del ckpt["optimizer"]
    torch.save(ckpt, tmp_path / CHECKPOINT)
    caplog.clear()
    trainer = make_trainer(corpus, tmp_path)
    assert not trainer.try_resume()
    _one_warning(caplog, str(tmp_path / CHECKPOINT))
    assert not (tmp_path / CHECKPOINT).exists()
    assert not _differ(_weights(trainer), _fresh_weights(corpus, tmp_path))
    assert trainer.state.epoch == 0 and trainer.state.history == []
    trainer.run()
    _assert_same_result(reference[0], trainer)


@pytest.mark.parametrize("damage", ["empty", "truncated", "other_run"])
def test_damaged_best_model_on_resume_restarts_cleanly(corpus, reference, tmp_path, caplog,
                                                        damage):
    """Resuming needs model.pt (the best epoch so far): a damaged one means a fresh start."""
    _interrupt(corpus, tmp_path, 13)                                   # model.pt of epoch 1
    best = tmp_path / BEST_MODEL
    if damage == "empty":
        best.write_bytes(b"")
    elif damage == "truncated":
        best.write_bytes(best.read_bytes()[:200])
    else:
        best.write_bytes((reference[2] / BEST_MODEL).read_bytes())
    caplog.clear()
    trainer = make_trainer(corpus, tmp_path)
    assert not trainer.try_resume()
    _one_warning(caplog, str(best))
    assert not best.exists() and not (tmp_path / CHECKPOINT).exists()
    assert not _differ(_weights(trainer), _fresh_weights(corpus, tmp_path))
    trainer.run()
    _assert_same_result(reference[0], trainer)


def test_max_batches_per_epoch_and_lr_halving(corpus, tmp_path):
    trainer = make_trainer(corpus, tmp_path, epochs=3, max_batches_per_epoch=2, lr=1e-7,
                           lr_patience=0)
    trainer.run()
    assert [r["examples"] for r in trainer.state.history] == [8, 8, 8]
    lrs = [r["lr"] for r in trainer.state.history]
    assert lrs[-1] < lrs[0]          # a flat validation loss halves the learning rate


def _scaled_weights(trainer: Trainer, factor: float) -> Trainer:
    """Every batch's weights (training and validation) multiplied by ``factor``."""
    inner = trainer._loss
    trainer._loss = lambda batch: inner({**batch, "weights": batch["weights"] * factor})
    return trainer


def test_training_does_not_depend_on_the_weights_scale(corpus, tmp_path):
    """Issue 21: the batch loss is normalised by the detached sum of (sum w)^2, so weights
    10^4 times smaller (an unnormalised loss 10^8 times smaller, under Adam's epsilon) train the
    same model and log the same losses."""
    runs = []
    for factor in (1.0, 1e-4):
        out = tmp_path / str(factor)
        trainer = _scaled_weights(make_trainer(corpus, out, epochs=2, max_batches_per_epoch=4),
                                  factor)
        trainer.run()
        runs.append(trainer)
    a, b = runs
    for key in ("train_loss", "valid_loss"):
        got, want = [r[key] for r in b.state.history], [r[key] for r in a.state.history]
        assert got == pytest.approx(want, rel=1e-3), key
    assert a.state.history[-1]["valid_loss"] > 0.01          # of order one, not (Σw)²-small
    sa, sb = a.model.state_dict(), b.model.state_dict()
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-3, atol=1e-4, msg=k)


def test_validation_loss_is_the_set_ratio(corpus, tmp_path):
    """valid_loss is Σ L_b / Σ (Σ_i w_bi)² over the validation set, whatever the batching
    (computed here one utterance at a time); train_loss is the same ratio over the epoch."""
    from bootsep.train.labels import labels_to_onehot
    from bootsep.train.loss import weighted_dc_loss

    trainer = make_trainer(corpus, tmp_path)
    total, scale = 0.0, 0.0
    trainer.model.eval()
    with torch.no_grad():
        for ex in trainer.valid_stream:
            feats = torch.as_tensor(ex["features"])[None]
            emb = trainer.model(feats, torch.tensor([feats.shape[1]]))
            y = labels_to_onehot(torch.as_tensor(ex["labels"])[None].long(), 2)
            w = torch.as_tensor(ex["weights"])[None]
            total += float(weighted_dc_loss(emb, y, w).sum())
            scale += float(w.sum()) ** 2
    trainer.model.train()
    assert trainer.validate() == pytest.approx(total / scale, rel=1e-4)


def test_cosine_schedule_anneals_per_batch_and_resumes_exactly(corpus, tmp_path):
    """train.lr_schedule: cosine sets every batch's rate from the run's progress alone
    (train/schedule.py), so a run interrupted mid-epoch resumes with the same rates."""
    seen = []
    ref = make_trainer(corpus, tmp_path / "ref", lr_schedule="cosine")
    inner = ref._loss
    ref._loss = lambda batch: (seen.append(ref.optimizer.param_groups[0]["lr"])
                               if ref.model.training else None, inner(batch))[1]
    ref.run()
    per_epoch = len(seen) // 3
    expected = [cosine_lr(3e-3, (e + i / per_epoch) / 3)
                for e in range(3) for i in range(per_epoch)]
    assert seen == pytest.approx(expected) and seen[0] == 3e-3 and seen[-1] < 0.02 * 3e-3
    assert [r["lr"] for r in ref.state.history] == pytest.approx(
        [expected[per_epoch * (e + 1) - 1] for e in range(3)])

    first = make_trainer(corpus, tmp_path / "run", lr_schedule="cosine")
    _fail_at(first, per_epoch + 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(TrainingInterrupted):
        first.run()
    resumed = make_trainer(corpus, tmp_path / "run", lr_schedule="cosine")
    assert resumed.try_resume()
    resumed.run()
    _assert_same_result(ref, resumed)


def test_cosine_lr_values():
    assert cosine_lr(2.0, 0.0) == 2.0 and cosine_lr(2.0, 0.5) == pytest.approx(1.0)
    assert cosine_lr(2.0, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(2.0, 0.25) == pytest.approx(1.0 + 2 ** -0.5)
    with pytest.raises(ValueError, match="outside"):
        cosine_lr(1.0, 1.5)


def test_loader_workers_auto_is_none_on_the_cpu_and_one_on_cuda():
    """train.loader_workers: auto trains on the CPU without a worker process (it would compete
    for the cores), on CUDA with one; a number is taken as it is, anything else is an error."""
    assert resolve_loader_workers("auto", torch.device("cpu")) == 0
    assert resolve_loader_workers("auto", torch.device("cuda")) == 1
    assert resolve_loader_workers(3, torch.device("cpu")) == 3
    for bad in (-1, "many", True, 1.5):
        with pytest.raises(BootsepError, match="train.loader_workers"):
            resolve_loader_workers(bad, torch.device("cpu"))
