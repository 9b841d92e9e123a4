"""Per-bin training weights of the confidence-weighted deep-clustering loss (paper §2.3).

w_{t,f}(α) = C_{t,f}(α) · |X_{t,f}| / Σ_{t,f} |X_{t,f}|, with C(α) = (C_cl C_JSD C_post)^α (eq. 7).
α = 0 gives the pure magnitude weights of Wang et al. (2018), which the ground-truth
conditions use too.
"""

from __future__ import annotations

import numpy as np

from bootsep.pipeline.confidence import combined_confidence


def magnitude_from_db(logmag_db: np.ndarray) -> np.ndarray:
    """|X| from 20 log10 |X| (eq. 2), float32."""
    return np.power(10.0, np.asarray(logmag_db, dtype=np.float32) / 20.0, dtype=np.float32)


def magnitude_share(mag: np.ndarray) -> np.ndarray:
    """|X| / Σ|X| over one utterance ``(T, F)``; all-zero input gives all-zero weights."""
    total = float(mag.sum(dtype=np.float64))
    return (mag / total).astype(np.float32) if total > 0 else np.zeros_like(mag, dtype=np.float32)


def training_weights(mag: np.ndarray, alpha: float, c_cl: float | None = None,
                     c_jsd: float | None = None, c_post: np.ndarray | None = None) -> np.ndarray:
    """w(α) for one utterance ``(T, F)``: eq. 7 confidence times the magnitude share (§2.3).

    With ``alpha == 0`` (or no confidence given) this is exactly :func:`magnitude_share`.
    """
    share = magnitude_share(mag)
    if alpha == 0 or c_post is None:
        return share
    conf = combined_confidence(np.float32(c_cl), np.float32(c_jsd), c_post.astype(np.float32), alpha)
    return (conf * share).astype(np.float32)
