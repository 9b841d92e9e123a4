"""Per-bin training weights of the confidence-weighted deep-clustering loss (paper §2.3).

w_{t,f}(α) = C_{t,f}(α) · |X_{t,f}| / Σ_{t,f} |X_{t,f}|, with C(α) = (C_cl C_JSD C_post)^α (eq. 7).
α = 0 gives the pure magnitude weights of Wang et al. (2018), which the ground-truth
conditions use too.

Eq. 8 weights every *pair* of bins by ``w_i w_j``, so an utterance's loss scales with the square
of its weight mass ``m = Σw``: within a batch the mixture-level confidence counts twice
(C^α acts on a mixture like C^{2α}). :func:`linear_in_mass` (``train.utterance_weighting:
linear``) divides an utterance's weights by ``√m``, so its loss scales with ``m`` and the
mixture's confidence counts once, while the bins keep their relative weights.
"""

from __future__ import annotations

import math

import numpy as np

from bootsep.pipeline.confidence import check_alpha, combined_confidence


def magnitude_from_db(logmag_db: np.ndarray) -> np.ndarray:
    """|X| from 20 log10 |X| (eq. 2), float32."""
    x = np.asarray(logmag_db, dtype=np.float32) * np.float32(math.log(10.0) / 20.0)
    return np.exp(x, out=x)


def magnitude_share(mag: np.ndarray) -> np.ndarray:
    """|X| / Σ|X| over one utterance ``(T, F)``; all-zero input gives all-zero weights."""
    total = float(mag.sum(dtype=np.float64))
    return (mag / total).astype(np.float32) if total > 0 else np.zeros_like(mag, dtype=np.float32)


def confidence_map(c_cl: float, c_jsd: float, c_post: np.ndarray,
                   alpha: float) -> np.ndarray | None:
    """C(α) of eq. 7 for one utterance, ``(T, F)`` float32 in [0, 1]; ``None`` for α = 0."""
    alpha = check_alpha(alpha)
    if alpha == 0:
        return None
    conf = combined_confidence(np.float32(c_cl), np.float32(c_jsd),
                               np.asarray(c_post, dtype=np.float32), alpha)
    conf = np.broadcast_to(np.asarray(conf, dtype=np.float32), np.shape(c_post))
    return np.clip(conf, 0.0, 1.0)   # float16 storage may round a hair past 1


def training_weights(mag: np.ndarray, alpha: float, c_cl: float | None = None,
                     c_jsd: float | None = None, c_post: np.ndarray | None = None) -> np.ndarray:
    """w(α) for one utterance ``(T, F)``: eq. 7 confidence times the magnitude share (§2.3).

    With ``alpha == 0`` (or no confidence given) this is exactly :func:`magnitude_share`.
    """
    share = magnitude_share(mag)
    alpha = check_alpha(alpha)
    if alpha == 0 or c_post is None:
        return share
    return (confidence_map(c_cl, c_jsd, c_post, alpha) * share).astype(np.float32)


def linear_in_mass(weights: np.ndarray) -> np.ndarray:
    """``w / √(Σw)`` for one utterance's weights (any shape): its eq. 8 loss then scales with its
    mass ``Σw`` instead of ``(Σw)²``; all-zero weights stay zero. float32 out."""
    mass = float(np.sum(weights, dtype=np.float64))
    if mass <= 0:
        return np.zeros_like(weights, dtype=np.float32)
    return (np.asarray(weights, dtype=np.float32) / np.float32(math.sqrt(mass))).astype(np.float32)
