"""Weighted deep-clustering loss (paper §2.3, eq. 8-9).

The affinity form compares ``N x N`` matrices (``N = T*F`` T-F bins, 51,600 for a 400-frame
training chunk with 129 bins), which never fits.  Expanding the squared Frobenius norm gives
the same value from ``D x D``, ``D x C`` and ``C x C`` products, linear in ``N``
(Hershey et al. 2016, eq. 3; weighted version in Wang, Le Roux & Hershey 2018).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from bootsep.errors import BootsepError


def weighted_dc_loss(
    embeddings: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    r"""Weighted deep-clustering loss per utterance, computed in low-rank form.

    Paper eq. (8)-(9), with :math:`W = \mathrm{diag}(w)`:

    .. math::
        \mathcal{L}_{DC,W}(V, Y) = \|W^{1/2}(VV^T - YY^T)W^{1/2}\|_F^2
                                 = \sum_{i,j} w_i w_j (\langle v_i, v_j\rangle
                                   - \langle y_i, y_j\rangle)^2
                                 = \|V^T W V\|_F^2 - 2\|V^T W Y\|_F^2 + \|Y^T W Y\|_F^2,

    the last line being what is computed (the ``N x N`` affinity is never formed).  No
    normalisation is applied here, so the value scales with :math:`(\sum w)^2`; training
    divides a batch by that (:func:`normalised_batch_loss`).

    The weights are meant to be the paper's
    :math:`w_{t,f}(\alpha) = C_{t,f}(\alpha)\,|X_{t,f}| / \sum_{t,f}|X_{t,f}|`
    (confidence eq. 7 times the magnitude weights of Wang, Le Roux & Hershey, "Alternative
    objective functions for deep clustering", ICASSP 2018); ``alpha = 0`` (``C = 1``) gives
    magnitude weighting only, and ground-truth training uses the same with ``C = 1``.
    Padded bins must have ``w = 0``: they then add nothing to the loss and receive exactly zero
    gradient (provided their embeddings are finite, e.g. the model's zeros).

    Args:
        embeddings: ``V``, one embedding per T-F bin (unit norm in deep clustering).
        targets: ``Y``, one-hot source labels (see :mod:`bootsep.train.labels`).
        weights: ``w``, non-negative per-bin weights.

    Shape:
        - embeddings: :math:`(B, N, D)` or :math:`(B, T, F, D)`.
        - targets: :math:`(B, N, C)` or :math:`(B, T, F, C)`.
        - weights: :math:`(B, N)` or :math:`(B, T, F)`.
        - returns: :math:`(B,)`, one loss per utterance (reduce as you like).

    Examples:
        >>> from bootsep.train.labels import labels_to_onehot
        >>> V = torch.nn.functional.normalize(torch.randn(2, 100, 129, 15), dim=-1)
        >>> Y = labels_to_onehot(torch.randint(0, 2, (2, 100, 129)), 2)
        >>> w = torch.rand(2, 100, 129); w = w / w.sum((1, 2), keepdim=True)
        >>> weighted_dc_loss(V, Y, w).shape
        torch.Size([2])
    """
    V, Y, w = _flatten_bins(embeddings, targets, weights)
    if torch.is_grad_enabled() and (Y.requires_grad or w.requires_grad):
        return _low_rank_terms(V, Y, w)[0]      # autograd through every input
    return _LowRankDCLoss.apply(V, Y, w)


def _low_rank_terms(V: torch.Tensor, Y: torch.Tensor, w: torch.Tensor):
    """Eq. 9 in low-rank form: ``(loss (B,), VY (B, N, D+C), VᵀWV (B, D, D), VᵀWY (B, D, C))``
    from ``V (B, N, D)``, ``Y (B, N, C)``, ``w (B, N)``; one ``(D+C)``-wide product gives
    ``VᵀWV`` and ``VᵀWY`` together."""
    dim = V.shape[-1]
    VY = torch.cat([V, Y], dim=-1)                                   # (B, N, D+C)
    gram = torch.bmm((V * w.unsqueeze(-1)).transpose(1, 2), VY)     # Vᵀ W [V Y], (B, D, D+C)
    vtwv, vtwy = gram[:, :, :dim], gram[:, :, dim:]
    ytwy = torch.bmm((Y * w.unsqueeze(-1)).transpose(1, 2), Y)      # (B, C, C)
    loss = (vtwv.pow(2).sum(dim=(1, 2)) - 2.0 * vtwy.pow(2).sum(dim=(1, 2))
            + ytwy.pow(2).sum(dim=(1, 2)))
    return loss, VY, vtwv, vtwy


class _LowRankDCLoss(torch.autograd.Function):
    """Eq. 9 with its gradient in closed form, ``∂L/∂V = 4 W (V VᵀWV - Y YᵀWV)``: one
    ``(B, N, D+C) x (B, D+C, D)`` product instead of autograd's pass back through three
    products and two weightings (about half the loss's time on the CPU; tested against
    autograd of the O(N²) form). Targets and weights get no gradient."""

    @staticmethod
    def forward(ctx, V, Y, w):
        loss, VY, vtwv, vtwy = _low_rank_terms(V, Y, w)
        ctx.save_for_backward(VY, w, vtwv, vtwy)
        return loss

    @staticmethod
    @once_differentiable             # no graph of the gradient: a second derivative raises
    def backward(ctx, grad_loss):
        VY, w, vtwv, vtwy = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        coeffs = torch.cat([vtwv, -vtwy.transpose(1, 2)], dim=1)       # [VᵀWV; -YᵀWV], (B, D+C, D)
        grad = torch.bmm(VY, coeffs)                                    # V VᵀWV - Y YᵀWV
        grad.mul_((4.0 * grad_loss)[:, None, None] * w.unsqueeze(-1))
        return grad, None, None


def _flatten_bins(
    embeddings: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check shapes and return ``V (B, N, D)``, ``Y (B, N, C)``, ``w (B, N)`` in V's dtype."""
    if not embeddings.dtype.is_floating_point:
        raise BootsepError(f"embeddings must be floating point, got {embeddings.dtype}")
    if embeddings.dim() < 3 or targets.dim() != embeddings.dim():
        raise BootsepError(
            "expected embeddings (B, N, D) / (B, T, F, D) and targets of the same rank, got "
            f"{tuple(embeddings.shape)} and {tuple(targets.shape)}"
        )
    if embeddings.shape[:-1] != targets.shape[:-1] or weights.shape != embeddings.shape[:-1]:
        raise BootsepError(
            "embeddings, targets and weights disagree on the bins: "
            f"{tuple(embeddings.shape)}, {tuple(targets.shape)}, {tuple(weights.shape)}"
        )
    dtype = embeddings.dtype
    V = embeddings.flatten(1, -2)
    Y = targets.flatten(1, -2).to(dtype)
    w = weights.flatten(1).to(dtype)
    return V, Y, w


def normalised_batch_loss(per_utt: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    r"""One batch's training loss: :math:`\sum_b L_b / \sum_b (\sum_i w_{b,i})^2`.

    :func:`weighted_dc_loss` scales with :math:`(\sum w)^2` (eq. 8 is quadratic in ``w``), and
    with the eq. 7 weights :math:`\sum w` per utterance is small (0.067 at ``alpha = 1``,
    0.008 at ``alpha = 2``), so the raw loss and its gradients are tiny and Adam's epsilon
    dominates its steps.  Dividing by the batch's :math:`\sum_b (\sum_i w_{b,i})^2`, held
    constant (detached, as in the authors' lab code of the time), makes the loss and its
    gradients invariant to a global scale of the weights while keeping the relative weight of
    bins and utterances within the batch.  A batch whose weights are all zero (every
    utterance degenerate) has ``L_b = 0`` and gives a loss of 0 with zero gradient.

    Args:
        per_utt: ``(B,)`` per-utterance losses from :func:`weighted_dc_loss`.
        weights: the ``(B, ...)`` per-bin weights they were computed with.

    Returns:
        A scalar tensor.
    """
    if per_utt.dim() != 1 or weights.dim() < 2 or weights.shape[0] != per_utt.shape[0]:
        raise BootsepError(f"expected per-utterance losses (B,) and weights (B, ...), got "
                           f"{tuple(per_utt.shape)} and {tuple(weights.shape)}")
    scale = batch_weight_scale(weights).to(per_utt.device)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))   # all-zero weights: L = 0
    return (per_utt.sum().to(torch.float64) / safe).to(per_utt.dtype)


def batch_weight_scale(weights: torch.Tensor) -> torch.Tensor:
    r"""The detached normaliser :math:`\sum_b (\sum_i w_{b,i})^2` of a ``(B, ...)`` batch of
    weights (a 0-d tensor, float64 so that small weights do not underflow when squared)."""
    w = weights.detach().to(torch.float64).flatten(1)
    return w.sum(dim=1).pow(2).sum()
