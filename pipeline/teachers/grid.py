"""A teacher fitted on its own STFT, its result mapped onto the student's T-F grid (issue 23).

Its posteriors mask its STFT of the reference microphone; the masked spectra are inverted to
per-source signals and transformed with the student's STFT; the posteriors on the student's
grid are the sources' shares of the power, ``p_k = |S_k|^2 / sum_j |S_j|^2``, and the labels
their argmax. Bins where no source has power keep uniform posteriors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig, istft, stft


@dataclass
class Mapped:
    """``posteriors (B, T, F, K)`` float32 and ``labels (B, T, F)`` uint8 on the student's grid
    (``T``: the student's frames of the longest mixture; later frames of shorter ones: uniform,
    label 0) and the per-source signals ``sources (B, K, L)`` at the reference microphone."""

    posteriors: np.ndarray
    labels: np.ndarray
    sources: np.ndarray


def map_to_grid(X0: np.ndarray, posteriors: np.ndarray, num_samples: np.ndarray,
                teacher_cfg: StftConfig, student_cfg: StftConfig) -> Mapped:
    """Posteriors ``(B, T', F', K)`` of a teacher on its STFT ``X0 (B, T', F')`` (reference
    microphone; ``teacher_cfg``) of mixtures of ``num_samples (B,)`` samples -> posteriors and
    labels on ``student_cfg``'s grid."""
    X0, posteriors = np.asarray(X0), np.asarray(posteriors)
    num_samples = np.asarray(num_samples, int)
    if X0.ndim != 3 or posteriors.shape[:3] != X0.shape or posteriors.ndim != 4:
        raise BootsepError(f"map_to_grid needs X0 (B, T, F) and posteriors (B, T, F, K); got "
                           f"{X0.shape} and {posteriors.shape}")
    if teacher_cfg.sample_rate != student_cfg.sample_rate or X0.shape[2] != teacher_cfg.num_freq:
        raise BootsepError(f"map_to_grid: the teacher's STFT ({teacher_cfg}) does not match X0 "
                           f"{X0.shape} or the student's sample rate {student_cfg.sample_rate}")
    B, _, _, K = posteriors.shape
    L = int(num_samples.max(initial=1))
    masked = posteriors.transpose(0, 3, 1, 2) * X0[:, None]                       # (B, K, T', F')
    sources = istft(masked, teacher_cfg, L)                                       # (B, K, L)
    sources *= np.arange(L)[None, None] < num_samples[:, None, None]              # cut each mix
    power = np.abs(stft(sources, student_cfg)) ** 2                               # (B, K, T, F)
    total = power.sum(axis=1, keepdims=True)
    post = np.where(total > 0, power / np.where(total > 0, total, 1.0), 1.0 / K)
    post = np.ascontiguousarray(post.transpose(0, 2, 3, 1), dtype=np.float32)    # (B, T, F, K)
    frames = student_cfg.num_frames(num_samples)
    valid = np.arange(post.shape[1])[None] < frames[:, None]                      # (B, T)
    post[~valid] = 1.0 / K
    labels = np.where(valid[..., None], post.argmax(axis=-1), 0).astype(np.uint8)
    return Mapped(post, labels, sources)
