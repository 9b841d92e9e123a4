"""The per-bin ensemble of a spatial teacher and a bootstrapped model (a per-bin form of the
per-mixture switch of paper §3.3): align the model's masks to the teacher's components
(:func:`align_masks`), then mix them per bin by how much each can be trusted there
(:func:`perbin_masks`: a product of experts, the model's mask read as a label that is right
with probability ``evaluate.perbin_trust``). Shapes: ``K`` sources, ``T`` frames, ``F`` bins.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


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


def perbin_masks(teacher, model, trust) -> np.ndarray:
    """Per-bin ensemble (a per-bin form of §3.3's switch): a product of experts of the
    teacher's posterior and the model's mask, read as a noisy label.

    ``teacher``: posteriors ``(K, T, F)``; ``model``: masks ``(K, T, F)`` in [0, 1] summing to 1
    over K, already aligned to the teacher (:func:`align_masks`); ``trust``: the probability
    ``q`` that the model's label of a bin is right, a number or ``(T, F)``, in [1/K, 1]. The
    model's mask becomes the likelihood ``L_k = q m_k + (1 − q)(1 − m_k)/(K − 1)`` (for K-means'
    binary masks: ``q`` on its source, ``(1 − q)/(K − 1)`` on each other) and the result is
    ``teacher_k L_k / Σ_j teacher_j L_j``. ``q = 1/K`` or an uninformative mask (``1/K``
    everywhere) leaves the teacher's posterior unchanged; ``q → 1`` follows the model wherever
    the teacher gives its source any probability. A bin whose product is 0 for every source
    keeps the teacher's posterior. Returns float32 ``(K, T, F)`` summing to 1 over K.
    """
    t = np.asarray(teacher, dtype=np.float64)
    m = np.asarray(model, dtype=np.float64)
    k = t.shape[0]
    q = np.asarray(trust, dtype=np.float64)
    if np.any(q < 1.0 / k - 1e-9) or np.any(q > 1.0):
        raise ValueError(f"trust must lie in [1/K, 1] = [{1 / k:.3f}, 1]")
    like = q * m + (1.0 - q) * (1.0 - m) / max(k - 1, 1)
    prod = t * like
    total = prod.sum(axis=0, keepdims=True)
    mixed = prod / np.where(total > 0, total, 1.0)
    return np.where(total > 0, mixed, t).astype(np.float32)
