"""Ensembles of the spatial algorithm and a bootstrapped model (paper §3.3).

The three per-mixture switches of the paper (``choose_*``; True = spatial) and a per-bin
combination of the two masks (:func:`align_masks`, :func:`perbin_masks`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from bootsep.pipeline.confidence import c_post

KINDS = ("confidence", "random", "oracle", "perbin")    # the ensembles of one model
USABLE = ("confidence", "perbin")     # usable on new audio (random: a coin; oracle: references)


def confidence_threshold(valid_mean_conf, q: float = 25.0) -> float:
    """Switching point of §3.3: the ``q``-th percentile (numpy "linear") of the validation mixtures'
    mean confidences.

    Non-finite values are ignored; raises ``ValueError`` if none is left or ``q`` is outside
    [0, 100].
    """
    if not 0.0 <= float(q) <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    conf = np.asarray(valid_mean_conf, dtype=np.float64).ravel()
    conf = conf[np.isfinite(conf)]
    if conf.size == 0:
        raise ValueError("no finite validation mean confidence to take a percentile of")
    return float(np.percentile(conf, q, method="linear"))


def choose_confidence(conf, threshold: float) -> np.ndarray:
    """Confidence ensemble (§3.3): spatial where the mixture's mean confidence is above
    ``threshold``, else the model.

    ``conf (M,)`` → bool ``(M,)``; a NaN confidence (or one equal to the threshold) picks the model.
    """
    return np.asarray(conf, dtype=np.float64) > float(threshold)


def choose_random(n_mixtures: int, seed: int) -> np.ndarray:
    """Random ensemble (§3.3): a fair coin per mixture from ``np.random.default_rng(seed)``
    → bool ``(M,)``."""
    return np.random.default_rng(seed).random(int(n_mixtures)) < 0.5


def choose_oracle(sdr_spatial, sdr_model) -> np.ndarray:
    """Oracle ensemble (§3.3): spatial where its true SI-SDR is ≥ the model's → bool ``(M,)``.

    Ties pick the spatial output; a NaN counts as −∞ (so the other, finite one is chosen).
    """
    s = np.nan_to_num(np.asarray(sdr_spatial, dtype=np.float64), nan=-np.inf)
    m = np.nan_to_num(np.asarray(sdr_model, dtype=np.float64), nan=-np.inf)
    return s >= m




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
