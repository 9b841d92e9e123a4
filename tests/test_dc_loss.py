"""Weighted deep-clustering loss (eq. 8-9) against the O(N^2) affinity form, and its labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bootsep.errors import BootsepError
from bootsep.train.labels import ideal_binary_labels, labels_to_onehot
from bootsep.train.loss import batch_weight_scale, normalised_batch_loss, weighted_dc_loss


def dc_loss_affinity(V: torch.Tensor, Y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Oracle: eq. (9) literally, sum_ij w_i w_j (<v_i, v_j> - <y_i, y_j>)^2, O(N^2) memory.

    V (B, N, D), Y (B, N, C), w (B, N) -> (B,).
    """
    diff = V @ V.transpose(1, 2) - Y @ Y.transpose(1, 2)  # (B, N, N)
    ww = w.unsqueeze(2) * w.unsqueeze(1)  # (B, N, N)
    return (ww * diff.pow(2)).sum(dim=(1, 2))


def _random_case(gen, B, N, D, C, lengths=None, dtype=torch.float64):
    V = torch.nn.functional.normalize(torch.randn(B, N, D, generator=gen, dtype=dtype), dim=-1)
    labels = torch.randint(0, C, (B, N), generator=gen)
    Y = labels_to_onehot(labels, C, dtype=dtype)
    w = torch.rand(B, N, generator=gen, dtype=dtype)
    drop = torch.rand(B, N, generator=gen) < 0.2  # some zero-confidence bins ...
    drop[:, 0] = False  # ... but never a whole utterance
    w[drop] = 0.0
    if lengths is not None:
        pad = torch.arange(N).unsqueeze(0) >= torch.as_tensor(lengths).unsqueeze(1)
        w[pad] = 0.0
    w = w / w.sum(dim=1, keepdim=True)
    return V, Y, w


@pytest.mark.parametrize(
    "B,N,D,C,lengths",
    [
        (1, 7, 3, 2, None),
        (2, 50, 15, 2, [50, 31]),
        (3, 129, 15, 3, [129, 1, 64]),
        (4, 200, 4, 5, [10, 200, 150, 3]),
    ],
)
def test_matches_affinity_form(B, N, D, C, lengths):
    gen = torch.Generator().manual_seed(B * 1000 + N)
    V, Y, w = _random_case(gen, B, N, D, C, lengths)
    got = weighted_dc_loss(V, Y, w)
    want = dc_loss_affinity(V, Y, w)
    assert got.shape == (B,)
    # atol only matters where the true loss is 0 (a 1-bin utterance gives ~1e-32 here)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)


def test_matches_affinity_form_unnormalised_weights_and_4d_inputs():
    gen = torch.Generator().manual_seed(5)
    B, T, F, D, C = 2, 6, 9, 5, 2
    V = torch.randn(B, T, F, D, generator=gen, dtype=torch.float64)  # not unit norm
    Y = labels_to_onehot(torch.randint(0, C, (B, T, F), generator=gen), C, torch.float64)
    w = 3.0 * torch.rand(B, T, F, generator=gen, dtype=torch.float64)
    got = weighted_dc_loss(V, Y, w)
    want = dc_loss_affinity(V.reshape(B, -1, D), Y.reshape(B, -1, C), w.reshape(B, -1))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0.0)


def test_zero_for_onehot_embeddings():
    gen = torch.Generator().manual_seed(1)
    B, N, D, C = 3, 80, 15, 2
    labels = torch.randint(0, C, (B, N), generator=gen)
    Y = labels_to_onehot(labels, C, dtype=torch.float64)
    V = torch.nn.functional.pad(Y, (0, D - C))  # one-hot padded with zeros to D
    w = torch.rand(B, N, generator=gen, dtype=torch.float64)
    loss = weighted_dc_loss(V, Y, w)
    torch.testing.assert_close(loss, torch.zeros(B, dtype=torch.float64), rtol=0, atol=1e-12)
    # and any rotation of those embeddings keeps inner products, hence the loss
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=gen, dtype=torch.float64))
    loss_rot = weighted_dc_loss(V @ Q, Y, w)
    # the low-rank form subtracts terms of size (sum w)^2 (about 1.6e3 here): float64 cancellation
    # leaves a few ulps of that, so the tolerance is relative to it
    scale = w.sum(-1) ** 2
    assert (loss_rot.abs() <= 64 * torch.finfo(torch.float64).eps * scale).all(), loss_rot / scale


def test_label_permutation_invariance():
    gen = torch.Generator().manual_seed(2)
    V, Y, w = _random_case(gen, 2, 120, 15, 3, [120, 77])
    for perm in ([1, 0, 2], [2, 0, 1], [0, 2, 1]):
        torch.testing.assert_close(
            weighted_dc_loss(V, Y[..., perm], w), weighted_dc_loss(V, Y, w), rtol=1e-12, atol=0
        )


def test_gradient_only_on_weighted_bins():
    gen = torch.Generator().manual_seed(3)
    lengths = [90, 40]
    V, Y, w = _random_case(gen, 2, 90, 15, 2, lengths)
    V = V.clone().requires_grad_(True)
    weighted_dc_loss(V, Y, w).sum().backward()
    grad_norm = V.grad.abs().sum(dim=-1)
    assert torch.equal(grad_norm[w == 0], torch.zeros_like(grad_norm[w == 0]))
    assert (grad_norm[w > 0] > 0).all()
    # padding content is irrelevant: changing it changes neither loss nor other gradients
    V2 = V.detach().clone()
    V2[1, 40:] = torch.randn(50, 15, generator=gen, dtype=torch.float64)
    V2.requires_grad_(True)
    loss2 = weighted_dc_loss(V2, Y, w)
    loss2.sum().backward()
    torch.testing.assert_close(loss2, weighted_dc_loss(V.detach(), Y, w), rtol=1e-12, atol=0)
    torch.testing.assert_close(V2.grad, V.grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("B,N,D,C,lengths", [(1, 7, 3, 2, None), (3, 129, 15, 3, [129, 1, 64]),
                                           (2, 200, 4, 5, [10, 200])])
def test_closed_form_gradient_matches_autograd_of_affinity_form(B, N, D, C, lengths):
    """The loss's hand-written backward (∂L/∂V = 4 W (V VᵀWV - Y YᵀWV)) against autograd
    through the O(N²) oracle, with a non-uniform upstream gradient per utterance."""
    gen = torch.Generator().manual_seed(7 * N + C)
    V, Y, w = _random_case(gen, B, N, D, C, lengths)
    upstream = torch.rand(B, generator=gen, dtype=torch.float64) + 0.5
    V1 = V.clone().requires_grad_(True)
    (weighted_dc_loss(V1, Y, w) * upstream).sum().backward()
    V2 = V.clone().requires_grad_(True)
    (dc_loss_affinity(V2, Y, w) * upstream).sum().backward()
    torch.testing.assert_close(V1.grad, V2.grad, rtol=1e-9, atol=1e-14)
    # and torch's own finite-difference check of the custom backward
    V3 = V.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: weighted_dc_loss(v, Y, w), (V3,))


def test_gradient_through_weights_and_targets_when_they_need_it():
    """Weights or targets that require a gradient take plain autograd (the closed form
    differentiates V only): the same loss and V-gradient, and a weight gradient equal to the
    oracle's."""
    gen = torch.Generator().manual_seed(8)
    V, Y, w = _random_case(gen, 2, 60, 6, 2, [60, 33])
    Va, wa = V.clone().requires_grad_(True), w.clone().requires_grad_(True)
    weighted_dc_loss(Va, Y, wa).sum().backward()
    Vb, wb = V.clone().requires_grad_(True), w.clone().requires_grad_(True)
    dc_loss_affinity(Vb, Y, wb).sum().backward()
    torch.testing.assert_close(Va.grad, Vb.grad, rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(wa.grad, wb.grad, rtol=1e-9, atol=1e-12)
    Vc = V.clone().requires_grad_(True)
    weighted_dc_loss(Vc, Y, w).sum().backward()
    torch.testing.assert_close(Vc.grad, Va.grad, rtol=1e-12, atol=1e-16)


def test_second_derivative_is_refused_not_wrong():
    """The closed-form backward builds no graph: differentiating its gradient again raises
    instead of returning a silently wrong second derivative."""
    gen = torch.Generator().manual_seed(10)
    V, Y, w = _random_case(gen, 1, 20, 3, 2)
    V = V.clone().requires_grad_(True)
    grad, = torch.autograd.grad(weighted_dc_loss(V, Y, w).sum(), V, create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(grad.sum(), V)


def test_float32_gradient_close_to_float64():
    gen = torch.Generator().manual_seed(9)
    V, Y, w = _random_case(gen, 2, 400, 15, 2, [400, 250])
    grads = []
    for dtype in (torch.float64, torch.float32):
        v = V.to(dtype).clone().requires_grad_(True)
        weighted_dc_loss(v, Y.to(dtype), w.to(dtype)).sum().backward()
        grads.append(v.grad.double())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-4 * grads[0].abs().max())


def test_padding_equals_truncation():
    gen = torch.Generator().manual_seed(4)
    V, Y, w = _random_case(gen, 1, 64, 8, 2, [30])
    full = weighted_dc_loss(V, Y, w)
    cut = weighted_dc_loss(V[:, :30], Y[:, :30], w[:, :30])
    torch.testing.assert_close(full, cut, rtol=1e-12, atol=0)


def test_non_negative_float32():
    gen = torch.Generator().manual_seed(6)
    for C in (1, 2, 4):
        V, Y, w = _random_case(gen, 5, 300, 15, C, dtype=torch.float32)
        assert (weighted_dc_loss(V, Y, w) >= 0).all()


def test_dtype_and_shape_checks():
    V = torch.randn(2, 10, 4)
    Y = labels_to_onehot(torch.zeros(2, 10, dtype=torch.long), 2)
    w = torch.ones(2, 10)
    out = weighted_dc_loss(V, Y.long(), w)  # integer one-hot is cast to V's dtype
    assert out.shape == (2,) and out.dtype == torch.float32
    with pytest.raises(BootsepError):
        weighted_dc_loss(V, Y[:, :9], w)
    with pytest.raises(BootsepError):
        weighted_dc_loss(V, Y, w[:, :9])
    with pytest.raises(BootsepError):
        weighted_dc_loss(V, Y.reshape(2, 10, 1, 2), w)
    with pytest.raises(BootsepError):
        weighted_dc_loss(V.long(), Y, w)


def test_labels_helpers():
    # (T=1, S=2, F=3) as the stft shards store source magnitudes; a tie goes to source 0
    mags = np.array([[[1.0, 5.0, 2.0], [3.0, 2.0, 2.0]]], np.float32)
    labels = ideal_binary_labels(mags)
    assert labels.shape == (1, 3) and labels.dtype == np.uint8
    assert labels.tolist() == [[1, 0, 0]]
    # three sources, against a loop over the bins
    rng = np.random.default_rng(0)
    mags3 = rng.random((4, 3, 5))
    want = [[max(range(3), key=lambda k: mags3[t, k, f]) for f in range(5)] for t in range(4)]
    assert ideal_binary_labels(mags3).tolist() == want
    onehot = labels_to_onehot(torch.from_numpy(labels.astype(np.int64)), 2)
    assert onehot.shape == (1, 3, 2)
    assert onehot.tolist() == [[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]]
    # negative labels (padding) give all-zero rows
    assert labels_to_onehot(torch.tensor([[-1, 2]]), 3).tolist() == [[[0, 0, 0], [0, 0, 1]]]
    with pytest.raises(BootsepError):
        labels_to_onehot(torch.tensor([3]), 3)
    with pytest.raises(BootsepError):
        labels_to_onehot(torch.tensor([0.0]), 3)
    with pytest.raises(BootsepError):
        ideal_binary_labels(np.ones((2, 3)))


def _uneven_batch(gen, dtype):
    """Utterances whose weights sum to very different totals (as eq. 7 at alpha = 1, 2 gives),
    one of them padded, in the trainer's float32."""
    V, Y, w = _random_case(gen, 3, 150, 15, 2, [150, 90, 150], dtype=dtype)
    return V, Y, w * torch.tensor([[0.067], [0.008], [1.0]], dtype=dtype)


def test_normalised_batch_loss_value_against_oracle():
    """Sum of the eq. 9 losses over the batch's sum of (sum_i w_i)^2; not, e.g., the mean of
    per-utterance normalised losses or a division by the squared batch total."""
    V, Y, w = _uneven_batch(torch.Generator().manual_seed(7), torch.float64)
    got = normalised_batch_loss(weighted_dc_loss(V, Y, w), w)
    want = dc_loss_affinity(V, Y, w).sum() / (w.sum(dim=1) ** 2).sum()
    torch.testing.assert_close(got, want, rtol=1e-10, atol=0)
    assert float(batch_weight_scale(w)) == pytest.approx(float((w.sum(dim=1) ** 2).sum()))


@pytest.mark.parametrize("factor", [1e-3, 1e3])
def test_normalised_batch_loss_invariant_to_weight_scale(factor):
    """The loss and its gradients w.r.t. the embeddings do not change when every weight is
    multiplied by one factor (float32 as in training; rtol 1e-4 covers the rounding of the
    scaled weights and of the low-rank form's cancellation)."""
    V, Y, w = _uneven_batch(torch.Generator().manual_seed(8), torch.float32)

    def loss_and_grad(weights):
        emb = V.clone().requires_grad_(True)
        loss = normalised_batch_loss(weighted_dc_loss(emb, Y, weights), weights)
        loss.backward()
        return loss.detach(), emb.grad

    loss, grad = loss_and_grad(w)
    loss_s, grad_s = loss_and_grad(w * factor)
    assert loss > 0.1    # of order one, not (sum w)^2-small
    torch.testing.assert_close(loss_s, loss, rtol=1e-4, atol=0)
    torch.testing.assert_close(grad_s, grad, rtol=1e-4, atol=1e-4 * float(grad.abs().max()))
    # the raw loss is not invariant: it scales with factor^2
    raw = weighted_dc_loss(V, Y, w).sum()
    torch.testing.assert_close(weighted_dc_loss(V, Y, w * factor).sum(), raw * factor**2,
                               rtol=1e-4, atol=0)


def test_normalised_batch_loss_scale_is_detached():
    """No gradient flows through the normaliser: d/dw equals that of sum_b L_b / constant."""
    V, Y, w0 = _uneven_batch(torch.Generator().manual_seed(9), torch.float64)
    w = w0.clone().requires_grad_(True)
    normalised_batch_loss(weighted_dc_loss(V, Y, w), w).backward()
    w_const = w0.clone().requires_grad_(True)
    (weighted_dc_loss(V, Y, w_const).sum() / float((w0.sum(dim=1) ** 2).sum())).backward()
    torch.testing.assert_close(w.grad, w_const.grad, rtol=1e-10, atol=0)
    # with the normaliser differentiated the gradient would differ
    w_live = w0.clone().requires_grad_(True)
    (weighted_dc_loss(V, Y, w_live).sum() / (w_live.sum(dim=1) ** 2).sum()).backward()
    assert not torch.allclose(w_live.grad, w.grad, rtol=1e-3)
    assert not batch_weight_scale(w).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalised_batch_loss_all_zero_weights(dtype):
    """A batch of degenerate utterances (every weight 0): loss 0, zero gradient, no NaN."""
    gen = torch.Generator().manual_seed(10)
    V, Y, w = _random_case(gen, 2, 40, 15, 2, dtype=dtype)
    V = V.clone().requires_grad_(True)
    w = torch.zeros_like(w).requires_grad_(True)
    loss = normalised_batch_loss(weighted_dc_loss(V, Y, w), w)
    loss.backward()
    assert loss.dtype == dtype and float(loss.detach()) == 0.0
    assert torch.equal(V.grad, torch.zeros_like(V)) and torch.isfinite(w.grad).all()


def test_normalised_batch_loss_shape_check():
    with pytest.raises(BootsepError, match="per-utterance losses"):
        normalised_batch_loss(torch.ones(3), torch.ones(2, 5))
    with pytest.raises(BootsepError, match="per-utterance losses"):
        normalised_batch_loss(torch.ones(3), torch.ones(3))
