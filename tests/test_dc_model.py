"""Deep-clustering BLSTM: shapes, unit norm, padding, seeded init, size, normaliser state."""

from __future__ import annotations

import io

import pytest
import torch

from bootsep.errors import BootsepError
from bootsep.train.model import (
    DeepClusteringBLSTM,
    FeatureNormalizer,
    FeatureStats,
    ModelConfig,
    init_model,
    paper_config,
    remove_utterance_mean,
)

SMALL = ModelConfig(num_freq=17, hidden=8, num_layers=2, embedding_dim=5, dropout=0.0)


def _features(B, T, F, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return 20.0 * torch.randn(B, T, F, generator=gen) - 30.0  # dB-like values


def expected_num_parameters(cfg: ModelConfig) -> int:
    """BLSTM (PyTorch keeps two bias vectors per gate) + dense layer."""
    H, F, D = cfg.hidden, cfg.num_freq, cfg.embedding_dim
    per_direction = lambda n_in: 4 * H * (n_in + H) + 2 * 4 * H  # noqa: E731
    lstm = 2 * per_direction(F) + (cfg.num_layers - 1) * 2 * per_direction(2 * H)
    dense = 2 * H * F * D + F * D
    return lstm + dense


def test_output_shape_and_unit_norm():
    model = init_model(SMALL, seed=0).eval()
    lengths = torch.tensor([11, 4, 7])
    out = model(_features(3, 11, 17), lengths)
    assert out.shape == (3, 11, 17, 5) and out.dtype == torch.float32
    norms = out.norm(dim=-1)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(norms[b, :n], torch.ones(n, 17), rtol=0, atol=1e-5)
        assert torch.equal(out[b, n:], torch.zeros_like(out[b, n:]))  # padding is exactly 0


def test_lengths_default_to_full():
    model = init_model(SMALL, seed=0).eval()
    x = _features(2, 6, 17)
    torch.testing.assert_close(model(x), model(x, torch.tensor([6, 6])))


def test_padding_invariance():
    model = init_model(SMALL, seed=3).eval()
    short = _features(1, 5, 17, seed=1)
    long = _features(1, 12, 17, seed=2)
    alone = model(short, torch.tensor([5]))
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 0, 0, 7), value=123.0)])
    together = model(batch, torch.tensor([12, 5]))
    torch.testing.assert_close(together[1, :5], alone[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(together[0], model(long, torch.tensor([12]))[0], rtol=0, atol=1e-6)
    # garbage in the padded frames changes nothing
    batch[1, 5:] = -7.0
    torch.testing.assert_close(model(batch, torch.tensor([12, 5])), together, rtol=0, atol=0)


def test_same_seed_same_weights_regardless_of_global_rng():
    a = init_model(SMALL, seed=42)
    torch.rand(1000)  # move the global RNG on
    state_before = torch.get_rng_state()
    b = init_model(SMALL, seed=42)
    assert torch.equal(torch.get_rng_state(), state_before)  # no global side effect
    c = init_model(SMALL, seed=43)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(),
                                  c.state_dict().values()):
        assert torch.equal(pa, pb), name
        if not name.startswith("normalizer."):
            assert not torch.equal(pa, pc), name


def test_paper_config_parameter_count():
    cfg = paper_config()
    assert (cfg.num_freq, cfg.hidden, cfg.num_layers, cfg.embedding_dim) == (129, 300, 4, 15)
    model = DeepClusteringBLSTM(cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_num_parameters(cfg) == 8_691_735  # paper: "8.7M parameters"
    assert abs(n - 8.7e6) / 8.7e6 < 0.01
    assert sum(p.numel() for p in init_model(SMALL).parameters()) == expected_num_parameters(SMALL)


def test_normalizer_state_dict_round_trip():
    model = init_model(SMALL, seed=0)
    mean = torch.linspace(-50, 10, 17)
    std = torch.linspace(1, 5, 17)
    model.set_stats(mean, std)
    assert "normalizer.mean" in model.state_dict() and "normalizer.std" in model.state_dict()
    buf = io.BytesIO()
    torch.save({"config": model.config.to_dict(), "state": model.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    clone = DeepClusteringBLSTM(ModelConfig.from_dict(saved["config"]), seed=99)
    clone.load_state_dict(saved["state"])
    torch.testing.assert_close(clone.normalizer.mean, mean)
    torch.testing.assert_close(clone.normalizer.std, std)
    x = _features(2, 8, 17)
    torch.testing.assert_close(clone.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_normalizer_applies_stats():
    norm = FeatureNormalizer(3)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert torch.equal(norm(x), x)  # identity until stats are set
    norm.set_stats(torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1.0, 2.0, 0.0]))
    torch.testing.assert_close(norm(x)[0, :2], torch.tensor([0.0, 0.5]))
    assert norm.std[2] > 0  # zero std is floored, not a division by zero
    with pytest.raises(BootsepError):
        norm.set_stats(torch.zeros(4), torch.ones(4))
    with pytest.raises(BootsepError):
        norm.set_stats(torch.zeros(3), torch.tensor([1.0, float("nan"), 1.0]))


def test_feature_stats_ignore_padding():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 10, 4, generator=gen) * 5 + 2
    lengths = torch.tensor([10, 3, 6])
    x_pad = x.clone()
    for b, n in enumerate(lengths.tolist()):
        x_pad[b, n:] = 1e6
    stats = FeatureStats(4)
    stats.update(x_pad[:2], lengths[:2])
    stats.update(x_pad[2:], lengths[2:])
    valid = torch.cat([x[b, :n] for b, n in enumerate(lengths.tolist())])
    mean, std = stats.mean_std()
    assert stats.count == 19
    torch.testing.assert_close(mean, valid.mean(0))
    torch.testing.assert_close(std, valid.std(0, unbiased=False))


def test_config_round_trip():
    """(Bad values are refused where they come in: params.yaml by bootsep.config, model
    files by saved_model.load_model; tests/test_config.py.)"""
    cfg = ModelConfig(num_freq=65, hidden=64, num_layers=2, embedding_dim=20, dropout=0.3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict({}) == ModelConfig()


UTTERANCE = ModelConfig(num_freq=17, hidden=8, num_layers=2, embedding_dim=5,
                        input_norm="utterance")


def test_remove_utterance_mean_against_a_loop():
    x = _features(3, 9, 17, seed=4).double()
    lengths = torch.tensor([9, 2, 5])
    out = remove_utterance_mean(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        mean = x[b, :n].mean(dim=0)   # the utterance's own frames only
        torch.testing.assert_close(out[b], x[b] - mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(out[b, :n].mean(dim=0), torch.zeros(17, dtype=x.dtype),
                                   rtol=0, atol=1e-12)


def test_utterance_norm_ignores_gain_and_fixed_colouration():
    """A gain (a constant in dB) or an equaliser (a constant per frequency) of the recording
    does not change the embeddings; with the global normalisation it does."""
    x, lengths = _features(2, 10, 17, seed=5), torch.tensor([10, 6])
    colour = torch.linspace(-12.0, 9.0, 17)
    for cfg, invariant in ((UTTERANCE, True), (SMALL, False)):
        model = init_model(cfg, seed=1).eval()
        model.set_stats(torch.full((17,), -30.0), torch.full((17,), 20.0))
        base = model(x, lengths)
        for shifted in (x + 15.0, x + colour):
            same = torch.allclose(model(shifted, lengths), base, rtol=0, atol=1e-5)
            assert same == invariant, cfg


def test_utterance_norm_keeps_padding_invariance():
    model = init_model(UTTERANCE, seed=3).eval()
    short, long = _features(1, 5, 17, seed=1), _features(1, 12, 17, seed=2)
    batch = torch.cat([long, torch.nn.functional.pad(short, (0, 0, 0, 7), value=123.0)])
    together = model(batch, torch.tensor([12, 5]))
    torch.testing.assert_close(together[1, :5], model(short, torch.tensor([5]))[0],
                               rtol=0, atol=1e-6)
    assert torch.equal(together[1, 5:], torch.zeros_like(together[1, 5:]))


def test_unknown_input_norm_is_refused():
    with pytest.raises(BootsepError, match="input_norm is 'cepstral'; expected one of global"):
        ModelConfig(input_norm="cepstral")


def test_input_validation():
    model = init_model(SMALL)
    with pytest.raises(BootsepError):
        model(_features(2, 5, 16), torch.tensor([5, 5]))
    with pytest.raises(BootsepError):
        model(_features(2, 5, 17), torch.tensor([6, 5]))
    with pytest.raises(BootsepError):
        model(_features(2, 5, 17), torch.tensor([0, 5]))
    with pytest.raises(BootsepError):
        model(_features(2, 5, 17), torch.tensor([5]))


def test_gradients_reach_all_weights_through_the_loss():
    from bootsep.train.labels import labels_to_onehot
    from bootsep.train.loss import weighted_dc_loss

    model = init_model(SMALL, seed=1).train()
    lengths = torch.tensor([9, 4])
    V = model(_features(2, 9, 17), lengths)
    gen = torch.Generator().manual_seed(0)
    Y = labels_to_onehot(torch.randint(0, 2, (2, 9, 17), generator=gen), 2)
    w = (torch.arange(9).view(1, 9, 1) < lengths.view(2, 1, 1)).float().expand(2, 9, 17)
    weighted_dc_loss(V, Y, w / w.sum((1, 2), keepdim=True)).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_padding_gets_no_gradient_and_batching_changes_nothing():
    """Model + loss on a padded batch: zero gradient on padded frames, and the parameter
    gradients equal the sum of those of each utterance run alone, unpadded."""
    from bootsep.train.labels import labels_to_onehot
    from bootsep.train.loss import weighted_dc_loss

    model = init_model(SMALL, seed=2).train()
    gen = torch.Generator().manual_seed(1)
    lengths = [9, 4]
    x = _features(2, 9, 17, seed=5).requires_grad_(True)
    Y = labels_to_onehot(torch.randint(0, 2, (2, 9, 17), generator=gen), 2)
    w = torch.rand(2, 9, 17, generator=gen)
    w[1, 4:] = 0.0                                           # padding has weight 0
    w = w / w.sum((1, 2), keepdim=True)
    weighted_dc_loss(model(x, torch.tensor(lengths)), Y, w).sum().backward()
    assert torch.equal(x.grad[1, 4:], torch.zeros_like(x.grad[1, 4:]))
    assert (x.grad[1, :4].abs().sum(-1) > 0).all()
    batched = {n: p.grad.clone() for n, p in model.named_parameters()}

    model.zero_grad()
    for b, n in enumerate(lengths):
        V = model(x.detach()[b:b + 1, :n], torch.tensor([n]))
        weighted_dc_loss(V, Y[b:b + 1, :n], w[b:b + 1, :n]).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(batched[name], p.grad, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize("layers", [1, 3])
def test_padded_blstm_equals_packed_outputs_and_gradients(layers):
    """The CPU path (fused LSTM on padded input, backward direction reversed within each
    length) gives the packed-sequence path's embeddings and weight gradients."""
    cfg = ModelConfig(num_freq=9, hidden=6, num_layers=layers, embedding_dim=4)
    x = torch.randn(4, 11, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lengths = torch.tensor([11, 3, 7, 1])
    results = []
    for packed in (True, False):
        model = init_model(cfg, seed=5).double()
        model.use_packed = packed
        emb = model(x, lengths)
        emb.pow(3).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((emb.detach(), grads))
    (e1, g1), (e2, g2) = results
    torch.testing.assert_close(e2, e1, rtol=1e-10, atol=1e-12)
    assert e2[1, 3:].abs().max() == 0 and e2[3, 1:].abs().max() == 0   # padding exactly zero
    assert g1.keys() == g2.keys() and len(g1) == 2 + 8 * layers
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-9, atol=1e-12, msg=name)
