"""The per-bin ensemble of a spatial teacher and a bootstrapped model (a per-bin form of the
per-mixture switch of paper §3.3): align the model's masks to the teacher's components
(:func:`align_masks`), then mix them per bin by how much each can be trusted there
(:func:`perbin_masks`). Shapes: ``K`` sources, ``T`` frames, ``F`` bins.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from bootsep.pipeline.confidence import c_post


def align_masks(reference, candidate, magnitude) -> np.ndarray:
    """Order of ``candidate``'s components that best matches ``reference``'s.

    ``reference``, ``candidate``: masks ``(K, T, F)``; ``magnitude``: ``|X| (T, F)``. Returns
    ``perm (K,)`` with ``candidate[perm]`` aligned to ``reference``: the assignment maximising
    the magnitude-weighted agreement ``Σ_k Σ_{t,f} |X| ref_k cand_perm[k]`` (exact, Hungarian).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    mag = np.asarray(magnitude, dtype=np.float64)
    agree = np.einsum("itf,jtf->ij", ref * mag[None], cand)
    rows, cols = linear_sum_assignment(-agree)
    return cols[np.argsort(rows)]


def perbin_masks(teacher, model, weight) -> np.ndarray:
    """Per-bin ensemble (a per-bin form of §3.3's switch): each bin mixes the teacher's
    posterior and the model's mask by how much each can be trusted there.

    ``teacher``: posteriors ``(K, T, F)``; ``model``: masks ``(K, T, F)`` already aligned to
    the teacher (:func:`align_masks`); ``weight``: the teacher's per-bin confidence
    ``w (T, F)`` in [0, 1] (eq. 7, ``C_cl C_JSD C_post``). The teacher gets weight ``w``, the
    model ``(1 − w) · C_post(model)`` (eq. 6 of its own mask: 1 for the K-means binary masks,
    so the result is ``w·teacher + (1 − w)·model`` there; 0 for an uninformative mask, which
    then leaves the teacher's posterior unchanged). Normalised by the weights' sum; a bin where
    both weights are 0 keeps the teacher's posterior. Returns float32 ``(K, T, F)``, a convex
    combination (sums to 1 over K where both inputs do).
    """
    t = np.asarray(teacher, dtype=np.float32)
    m = np.asarray(model, dtype=np.float32)
    w_t = np.clip(np.asarray(weight, dtype=np.float32), 0.0, 1.0)
    w_m = (1.0 - w_t) * c_post(np.moveaxis(m, 0, -1))                                 # eq. 6
    total = w_t + w_m
    safe = np.where(total > 0, total, 1.0)
    mixed = (w_t[None] * t + w_m[None] * m) / safe[None]
    return np.where(total[None] > 0, mixed, t).astype(np.float32)
