"""A training batch run as parts on threads (train/batch_parts.py, ``train.batch_parts``): the
parts hold the batch's utterances, their summed gradients are the whole batch's, the result
does not depend on how many threads ran them, and a run resumes exactly."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch

from bootsep.errors import BootsepError
from bootsep.train.batch_parts import batch_gradients, split_batch, sum_gradients
from bootsep.train.dataset import collate
from bootsep.train.labels import labels_to_onehot
from bootsep.train.loop import CHECKPOINT, TrainingInterrupted
from bootsep.train.loss import normalised_batch_loss, weighted_dc_loss
from bootsep.train.model import ModelConfig, init_model
from tests import test_train_loop
from tests.test_train_loop import _assert_same_result, _fail_at, make_trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F = 9
MODEL = ModelConfig(num_freq=F, hidden=6, num_layers=2, embedding_dim=4)
corpus = test_train_loop.corpus       # the training loop tests' tiny corpus (a module fixture)


def _batch(lengths, seed=0, zero_weights=False) -> dict:
    rng = np.random.default_rng(seed)
    examples = []
    for i, t in enumerate(lengths):
        w = np.zeros((t, F), np.float32) if zero_weights else rng.random((t, F), np.float32)
        examples.append({"id": f"u{i}", "features": rng.normal(size=(t, F)).astype(np.float32),
                         "labels": rng.integers(0, 2, (t, F)), "weights": w})
    return collate(examples)


def _loss_of(model):
    def loss(batch):
        emb = model(batch["features"], batch["lengths"])
        b, t, f, d = emb.shape
        y = labels_to_onehot(batch["labels"], 2).reshape(b, t * f, -1)
        w = batch["weights"].reshape(b, t * f)
        return weighted_dc_loss(emb.reshape(b, t * f, d), y, w), w
    return loss


@pytest.mark.parametrize("parts", [1, 2, 3, 5, 8])
def test_split_batch_keeps_every_utterance_and_trims_padding(parts):
    lengths = [7, 3, 12, 5, 9]
    batch = _batch(lengths)
    out = split_batch(batch, parts)
    assert len(out) == min(parts, len(lengths))
    assert sum((p["ids"] for p in out), []) == batch["ids"]
    row = 0
    for p in out:
        frames = int(p["lengths"].max())
        assert p["features"].shape[1] == frames <= batch["features"].shape[1]
        for j in range(len(p["ids"])):
            n = int(p["lengths"][j])
            assert n == lengths[row]
            for key in ("features", "labels", "weights", "mask"):
                assert torch.equal(p[key][j, :n], batch[key][row, :n]), key
                assert torch.equal(p[key][j, n:], batch[key][row, n:frames]), key   # padding
            row += 1
    assert row == len(lengths)


def test_split_batch_rejects_no_parts():
    with pytest.raises(BootsepError, match="at least 1"):
        split_batch(_batch([3, 4]), 0)


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_parts_gradients_equal_the_whole_batch_gradient(parts):
    """The loss is a sum over utterances divided by the batch's detached normaliser, so the
    parts' gradients add up to the one-pass gradient (to float rounding)."""
    model = init_model(MODEL, seed=3)
    params = list(model.parameters())
    batch = _batch([11, 4, 8, 6], seed=1)
    per_utt, weights = _loss_of(model)(batch)
    want = torch.autograd.grad(normalised_batch_loss(per_utt, weights), params)
    got_utt, got_w, got = batch_gradients(_loss_of(model), split_batch(batch, parts), params)
    torch.testing.assert_close(got_utt, per_utt.detach(), rtol=1e-5, atol=1e-7)
    assert sum(float(w.sum()) for w in got_w) == pytest.approx(float(weights.sum()), rel=1e-6)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-7)


def test_all_zero_weights_give_zero_gradients():
    model = init_model(MODEL, seed=3)
    params = list(model.parameters())
    _, _, grads = batch_gradients(_loss_of(model), split_batch(_batch([5, 6], zero_weights=True),
                                                               2), params)
    assert all(g is not None and torch.count_nonzero(g) == 0 for g in grads)


def test_sum_gradients_adds_in_part_order_and_keeps_missing_as_none():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0])
    out = sum_gradients([(a, None), (b, None)])
    assert torch.equal(out[0], a + b) and out[1] is None
    assert torch.equal(a, torch.tensor([1.0, 2.0]))          # inputs untouched


@pytest.fixture(scope="module")
def two_parts(corpus, tmp_path_factory):
    """A 2-epoch run with batch_parts 2, two threads."""
    trainer = make_trainer(corpus, tmp_path_factory.mktemp("parts"), epochs=2, batch_parts=2,
                           torch_threads=2)
    trainer.run()
    return trainer


def test_result_does_not_depend_on_the_threads_that_ran_the_parts(corpus, two_parts, tmp_path):
    one = make_trainer(corpus, tmp_path, epochs=2, batch_parts=2, torch_threads=1)
    one.run()
    _assert_same_result(two_parts, one)


def test_parts_train_the_same_model_as_one_pass(corpus, two_parts, tmp_path):
    whole = make_trainer(corpus, tmp_path, epochs=2, batch_parts=1, torch_threads=2)
    whole.run()
    a, b = two_parts.model.state_dict(), whole.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=k)
    for ra, rb in zip(two_parts.state.history, whole.state.history):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-4)
        assert ra["quantity"] == pytest.approx(rb["quantity"], rel=1e-6)


def test_parts_run_resumes_exactly_after_sigterm(corpus, two_parts, tmp_path):
    first = make_trainer(corpus, tmp_path, epochs=2, batch_parts=2, torch_threads=2)
    _fail_at(first, 25, lambda: os.kill(os.getpid(), signal.SIGTERM))   # epoch 2, two calls a batch
    with pytest.raises(TrainingInterrupted):
        first.run()
    assert (tmp_path / CHECKPOINT).is_file()
    resumed = make_trainer(corpus, tmp_path, epochs=2, batch_parts=2, torch_threads=2)
    assert resumed.try_resume() and resumed.state.epoch == 1 and resumed.state.position > 0
    resumed.run()
    _assert_same_result(two_parts, resumed)
