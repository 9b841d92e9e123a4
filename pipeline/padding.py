"""Variable-length utterances <-> padded batches, for the batched numeric core.

Shards store per-frame arrays of many utterances concatenated; the numerics (features,
EM, confidence) work on ``(B, T_max, ...)`` batches with a ``(B, T_max)`` frame mask
(:func:`frames_valid`, also the mask of points packed to the front of each row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pad_stack(arrays: Sequence[np.ndarray], fill=0) -> tuple[np.ndarray, np.ndarray]:
    """``B`` arrays ``(T_b, ...)`` -> ``(B, max T_b, ...)`` padded with ``fill``, and ``(B,)``
    lengths."""
    if not arrays:
        raise ValueError("pad_stack needs at least one array")
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    tail = arrays[0].shape[1:]
    out = np.full((len(arrays), int(lengths.max()), *tail), fill, dtype=arrays[0].dtype)
    for b, a in enumerate(arrays):
        out[b, : a.shape[0]] = a
    return out, lengths


def frames_valid(lengths: np.ndarray, n_frames: int) -> np.ndarray:
    """``(B,)`` frame counts -> ``(B, n_frames)`` bool, True for the first ``lengths[b]`` frames."""
    lengths = np.asarray(lengths)
    return np.arange(n_frames)[None, :] < lengths[:, None]


def unpad(batch: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Inverse of :func:`pad_stack`: the first ``lengths[b]`` frames of each row."""
    return [batch[b, : int(n)] for b, n in enumerate(lengths)]
