"""The CUDA path: packed cuDNN BLSTM, bf16 autocast, checkpoints across devices.

Skipped where no CUDA device is present (CI never has one); run on a GPU machine with
``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch
from test_train_loop import (  # noqa: F401  (corpus is a fixture)
    DROPOUT,
    _interrupt,
    corpus,
    make_trainer,
)

from bootsep.train.checkpoint import load_checkpoint
from bootsep.train.loop import CHECKPOINT
from bootsep.train.model import ModelConfig, init_model
from bootsep.train.saved_model import load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("layers", [1, 3])
def test_cuda_packed_blstm_equals_cpu_padded_path(layers):
    """cuDNN on packed sequences (the CUDA path) gives the CPU path's embeddings and weight
    gradients (float64, so that TF32 and summation order cannot hide a real difference)."""
    cfg = ModelConfig(num_freq=9, hidden=12, num_layers=layers, embedding_dim=4)
    x = torch.randn(5, 17, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lengths = torch.tensor([17, 4, 9, 1, 16])
    results = []
    for device in ("cpu", "cuda"):
        model = init_model(cfg, seed=7).double().to(device)
        assert model.use_packed is None            # the default: packed exactly on CUDA
        emb = model(x.to(device), lengths)
        emb.pow(3).sum().backward()
        results.append((emb.detach().cpu(), {n: p.grad.cpu() for n, p in model.named_parameters()
                                             if p.grad is not None}))
    (e_cpu, g_cpu), (e_gpu, g_gpu) = results
    torch.testing.assert_close(e_gpu, e_cpu, rtol=1e-9, atol=1e-11)
    assert e_gpu[1, 4:].abs().max() == 0 and e_gpu[3, 1:].abs().max() == 0   # padding exactly zero
    assert g_cpu.keys() == g_gpu.keys() and len(g_cpu) == 2 + 8 * layers
    for name in g_cpu:
        torch.testing.assert_close(g_gpu[name], g_cpu[name], rtol=1e-8, atol=1e-10, msg=name)


@pytest.mark.parametrize("amp", [False, True])
def test_training_on_cuda_learns_and_the_model_loads_on_cpu(corpus, tmp_path, amp):  # noqa: F811
    trainer = make_trainer(corpus, tmp_path, device="cuda", amp=amp)
    assert trainer.device.type == "cuda"
    before = trainer.validate()
    trainer.run()
    assert trainer.state.best_valid < 0.8 * before, [r["valid_loss"] for r in trainer.state.history]
    # the saved model is device-free: it loads on the CPU with the very weights trained on the
    # GPU, and embeds as the GPU does (cuDNN's TF32 off: with it, float32 agrees to ~1e-3 only)
    model, _ = load_model(tmp_path, "cpu")
    gpu_model, _ = load_model(tmp_path, "cuda")
    for (name, a), b in zip(model.state_dict().items(), gpu_model.state_dict().values()):
        assert a.device.type == "cpu" and torch.equal(a, b.cpu()), name
    x = torch.randn(2, 30, model.config.num_freq, generator=torch.Generator().manual_seed(0)) - 40
    lengths = torch.tensor([30, 21])
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            torch.testing.assert_close(gpu_model(x.cuda(), lengths).cpu(), model(x, lengths),
                                       rtol=1e-4, atol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    # the checkpoint loads onto the GPU; a finished run is not resumed (a rerun retrains)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT, map_location="cuda")
    assert ckpt["state"]["done"] and ckpt["model"]["embed.weight"].is_cuda
    assert not make_trainer(corpus, tmp_path, device="cuda", amp=amp).try_resume()


def test_cuda_dropout_resume_matches_uninterrupted_run(corpus, tmp_path):  # noqa: F811
    """cuDNN's RNN dropout draws from the CUDA generator, re-seeded per batch from train.seed
    (which also resets cuDNN's dropout state): a resumed run draws the same masks. cuDNN's
    backward may sum in another order, so the check is close, not equal, against a control
    whose masks differ (another train.seed, same weights and data)."""
    kw = {"model_cfg": DROPOUT, "device": "cuda", "epochs": 2, "data_seed": 0}
    ref = make_trainer(corpus, tmp_path / "ref", **kw)
    ref.run()
    other = make_trainer(corpus, tmp_path / "other", seed=1, **kw)
    other.run()
    _interrupt(corpus, tmp_path / "cut", 13, **kw)
    resumed = make_trainer(corpus, tmp_path / "cut", **kw)
    assert resumed.try_resume() and resumed.state.position == 3
    resumed.run()
    a, b, c = (t.model.state_dict() for t in (ref, resumed, other))
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    assert max(float((c[k] - a[k]).abs().max()) for k in a) > 1e-3
