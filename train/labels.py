"""Label helpers for the deep-clustering objective (paper §2.1, §2.3).

The deep-clustering loss needs, for every T-F bin, a one-hot row ``y_i`` saying which source
owns the bin.  With ground truth the owner is the loudest source (ideal binary mask, Hershey et
al. 2016: :func:`ideal_binary_labels`); with the spatial model it is the GMM component with the
highest posterior (eq. 3), stored by the spatial stage as ``labels``.
"""

from __future__ import annotations

import numpy as np
import torch

from bootsep.errors import BootsepError


def ideal_binary_labels(source_mag: np.ndarray) -> np.ndarray:
    """Index of the loudest source in every T-F bin (the ideal binary mask as labels).

    ``source_mag``: per-source magnitudes as the stft shards store them, ``(T, S, F)`` (any
    leading axes before ``T`` work alike). Returns ``(T, F)`` uint8 in ``[0, S)``; ties go to
    the lowest index.
    """
    source_mag = np.asarray(source_mag)
    if source_mag.ndim < 3:
        raise BootsepError("ideal_binary_labels expects source magnitudes (..., T, S, F), got "
                           f"shape {source_mag.shape}")
    if not 1 <= source_mag.shape[-2] <= 256:
        raise BootsepError(f"ideal_binary_labels needs 1 to 256 sources, got "
                           f"{source_mag.shape[-2]}")
    return np.argmax(source_mag, axis=-2).astype(np.uint8)


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
