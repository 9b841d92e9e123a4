"""A model of ``model.frame_stride`` s: trained on one phase of each example's frames, it embeds
a whole spectrogram as its s phases, interleaved (train/model.py, train/dataset.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bootsep.errors import BootsepError
from bootsep.evaluate.inference import embed
from bootsep.train.conditions import Condition
from bootsep.train.dataset import ShardStream, take_phase
from bootsep.train.inputs import shard_groups
from bootsep.train.model import ModelConfig, embed_phases, frame_phase, init_model
from bootsep.train.synthetic import TINY_STFT, write_synthetic_split

STRIDED = ModelConfig(num_freq=17, hidden=8, num_layers=2, embedding_dim=5, frame_stride=2)
GT = Condition("gt", "gt")


def _features(B, T, F=17, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return 20.0 * torch.randn(B, T, F, generator=gen) - 30.0


def _by_loop(model, x, lengths):
    """The oracle: each utterance's phases embedded one at a time, frame t from phase t mod s."""
    s = model.config.frame_stride
    out = torch.zeros(*x.shape, model.config.embedding_dim)
    for b, n in enumerate(lengths):
        for p in range(min(s, n)):
            part = x[b:b + 1, p:n:s]
            with torch.no_grad():
                out[b, p:n:s] = model(part, torch.tensor([part.shape[1]]))[0]
    return out


@pytest.mark.parametrize("stride", [2, 3])
def test_phases_embedded_and_interleaved_as_a_loop_does(stride):
    model = init_model(ModelConfig(**{**STRIDED.to_dict(), "frame_stride": stride}), seed=1).eval()
    lengths = [13, 1, 2, 8]                       # shorter than the stride too
    x = _features(4, 13)
    got = embed_phases(model, x, torch.tensor(lengths))
    assert got.shape == (4, 13, 17, 5)
    torch.testing.assert_close(got, _by_loop(model, x, lengths), rtol=0, atol=1e-6)
    for b, n in enumerate(lengths):               # unit norm on valid frames, zero after
        torch.testing.assert_close(got[b, :n].norm(dim=-1), torch.ones(n, 17), rtol=0, atol=1e-5)
        assert not got[b, n:].any()


def test_stride_one_is_the_plain_forward_pass():
    model = init_model(ModelConfig(num_freq=17, hidden=8, num_layers=1, embedding_dim=5), seed=0)
    x, lengths = _features(2, 9), torch.tensor([9, 4])
    assert torch.equal(embed_phases(model.eval(), x, lengths), model(x, lengths))


def test_evaluation_embeds_every_frame_of_a_strided_model():
    model = init_model(STRIDED, seed=2).eval()
    feats = [_features(1, n, seed=n)[0].numpy() for n in (11, 6)]
    for f, emb in zip(feats, embed(model, feats)):
        assert emb.shape == (f.shape[0], 17, 5)
        ref = _by_loop(model, torch.from_numpy(f)[None], [f.shape[0]])[0].numpy()
        np.testing.assert_allclose(emb, ref, rtol=0, atol=1e-6)


def test_strided_embedding_refuses_a_bad_shape_in_one_line():
    with pytest.raises(BootsepError, match=r"expected features \(B, T, 17\), got \(4, 17\)"):
        embed_phases(init_model(STRIDED), torch.zeros(4, 17), torch.tensor([4]))


def test_frame_phase_and_config_refuse_what_does_not_exist():
    assert frame_phase(5, 2, 1) == slice(1, None, 2)
    with pytest.raises(BootsepError, match="phase 1 of stride 2 is outside an utterance of 1"):
        frame_phase(1, 2, 1)
    with pytest.raises(BootsepError, match="frame_stride is 0; expected an integer >= 1"):
        ModelConfig(frame_stride=0)


def test_take_phase_draws_only_with_a_stride():
    ex = {"id": "u", "features": np.arange(14.0).reshape(7, 2), "labels": np.arange(7),
          "confidence": None}
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert take_phase(ex, 1, rng) is ex and rng.bit_generator.state == state
    assert np.array_equal(take_phase(ex, 2, None)["labels"], [0, 2, 4, 6])   # validation: phase 0
    phases = {int(take_phase(ex, 2, rng)["labels"][0]) for _ in range(40)}
    assert phases == {0, 1}
    one = {"id": "v", "features": np.zeros((1, 2)), "labels": np.zeros(1), "confidence": None}
    assert take_phase(one, 3, rng)["features"].shape == (1, 2)      # a phase that exists


def test_stream_yields_one_phase_of_each_example(tmp_path):
    write_synthetic_split(tmp_path, "train", 12, utterances_per_shard=4, frames=(10, 30), seed=3)
    groups = shard_groups(GT, "train", tmp_path)
    full = {ex["id"]: ex for ex in ShardStream(groups, GT, TINY_STFT, seed=0, max_frames=None,
                                                 shuffle=False)}
    strided = ShardStream(groups, GT, TINY_STFT, seed=0, max_frames=None, shuffle_buffer=4,
                          frame_stride=2)
    phases = []
    for ex in strided:
        f = full[ex["id"]]["features"]
        p = next(p for p in (0, 1) if np.array_equal(f[p::2], ex["features"]))
        np.testing.assert_array_equal(ex["labels"], full[ex["id"]]["labels"][p::2])
        np.testing.assert_allclose(ex["weights"].sum(), 1.0, rtol=1e-5)  # shares of the phase
        phases.append(p)
    assert len(phases) == 12 and set(phases) == {0, 1}
    valid = ShardStream(groups, GT, TINY_STFT, seed=0, max_frames=None, shuffle=False,
                        frame_stride=2)
    assert all(np.array_equal(ex["features"], full[ex["id"]]["features"][::2]) for ex in valid)
    cropped = ShardStream(groups, GT, TINY_STFT, seed=0, max_frames=6, frame_stride=2)
    assert max(ex["features"].shape[0] for ex in cropped) == 6   # crops count the model's frames
