"""Label helpers for the deep-clustering objective (paper §2.1, §2.3).

The deep-clustering loss needs, for every T-F bin, a one-hot row ``y_i`` saying which source
owns the bin.  With ground truth the owner is the loudest source (ideal binary mask, Hershey et
al. 2016); with the spatial model it is the GMM component with the highest posterior (eq. 3).
Both are an argmax over a source axis, so :func:`ideal_binary_labels` serves both.
"""

from __future__ import annotations

import torch

from bootsep.errors import BootsepError


def ideal_binary_labels(source_mags: torch.Tensor) -> torch.Tensor:
    """Index of the dominant source in every T-F bin (the ideal binary mask as labels).

    Args:
        source_mags: Per-source magnitudes (or masks / GMM posteriors, eq. 3).

    Shape:
        - source_mags: :math:`(B, S, T, F)` (any leading dims before ``S`` work alike).
        - returns: :math:`(B, T, F)` long, values in ``[0, S)``; ties go to the lowest index.
    """
    if source_mags.dim() < 3:
        raise BootsepError(
            f"ideal_binary_labels expects (..., S, T, F), got shape {tuple(source_mags.shape)}"
        )
    if source_mags.shape[-3] < 1:
        raise BootsepError("ideal_binary_labels needs at least one source")
    return torch.argmax(source_mags, dim=-3)


def labels_to_onehot(
    labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """One-hot label matrix ``Y`` of eq. (8)-(9).

    Negative labels mean "no label" (e.g. padding) and give an all-zero row, which drops the
    bin from ``YY^T``; the loss weight ``w`` should be 0 there as well.

    Args:
        labels: Source index per T-F bin.
        num_classes: Number of sources ``C``.
        dtype: Floating dtype of the result.

    Shape:
        - labels: :math:`(B, T, F)` long (any shape works).
        - returns: :math:`(B, T, F, C)`.
    """
    if num_classes < 1:
        raise BootsepError(f"num_classes must be >= 1, got {num_classes}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise BootsepError(f"labels must be an integer tensor, got {labels.dtype}")
    labels = labels.long()
    if labels.numel() and int(labels.max()) >= num_classes:
        raise BootsepError(f"label {int(labels.max())} out of range for {num_classes} classes")
    valid = labels >= 0
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), num_classes).to(dtype)
    return onehot * valid.unsqueeze(-1).to(dtype)
