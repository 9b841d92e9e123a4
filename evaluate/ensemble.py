"""Ensembles of the spatial algorithm and a bootstrapped model (paper §3.3).

The three per-mixture switches of the paper (``choose_*``; True = spatial); the per-bin
combination of the two masks is :mod:`bootsep.evaluate.perbin` (kept apart: the report
imports this module and must not depend on the confidence code).
"""

from __future__ import annotations

import numpy as np

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



