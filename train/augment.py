"""Spectral augmentation of training examples: voices the corpus does not have.

The embedded corpus's neural voices are blends of five base styles, so a model trained on
it learns those voices more than speech. Each training crop is given, on the trainer's side
(the shards stay as they are), a random

- **frequency-axis warp** ``a`` (vocal-tract length perturbation, Jaitly & Hinton 2013): the
  spectrum is stretched by ``a`` up to a boundary bin and linearly squeezed above it, so DC
  and Nyquist stay where they are; formants and pitch harmonics move by ``a``;
- **spectral tilt** ``t`` dB: a line from ``-t/2`` dB at DC to ``+t/2`` dB at Nyquist added to
  the log magnitude (a first-order filter of the mixture).

Both act on the mixture as a whole, i.e. on both sources alike, so the labels (which source
dominates a bin) move with the bins and are otherwise unchanged: the features are
interpolated linearly between bins, the labels and the confidence take the nearest bin. The
loss weights (§2.3) are computed afterwards from the augmented features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOUNDARY = 0.8          # of Nyquist: the warp is linear below min(a, 1) * BOUNDARY * Nyquist / a


@dataclass(frozen=True)
class SpectralAugment:
    """``warp``: ``(low, high)`` range of the warp factor; ``tilt_db``: the tilt is drawn from
    ``U(-tilt_db, tilt_db)``. ``(1, 1)`` and ``0`` turn each off."""

    warp: tuple[float, float] = (1.0, 1.0)
    tilt_db: float = 0.0

    @property
    def active(self) -> bool:
        return tuple(self.warp) != (1.0, 1.0) or self.tilt_db != 0.0

    def __call__(self, example: dict, rng: np.random.Generator) -> dict:
        """``example`` with ``features`` (T, F) warped and tilted, ``labels`` (T, F) and
        ``confidence`` (T, F) or None warped alike; one warp and one tilt drawn from ``rng``."""
        a = float(rng.uniform(*self.warp))
        t = float(rng.uniform(-self.tilt_db, self.tilt_db))
        return warp_example(example, a, t)


def warp_source_bins(num_freq: int, a: float) -> np.ndarray:
    """(F,) fractional input bin that each output bin reads under warp factor ``a``.

    The forward warp (VTLP) maps input frequency ``f`` to ``a f`` for ``f <= b`` with
    ``b = BOUNDARY · S · min(a, 1) / a`` and ``S`` the Nyquist bin, and linearly from ``a b`` to
    ``S`` above it; this is its inverse, sampled at the output bins (increasing, 0 at DC, S at
    Nyquist).
    """
    if not a > 0:
        raise ValueError(f"warp factor {a} must be positive")
    s = float(num_freq - 1)
    b = BOUNDARY * s * min(a, 1.0) / a
    g = np.arange(num_freq, dtype=np.float64)
    low = g / a
    high = s - (s - g) * (s - b) / (s - a * b)
    return np.where(g <= a * b, low, high)


def warp_example(example: dict, a: float, tilt_db: float) -> dict:
    """``example`` warped by factor ``a`` and tilted by ``tilt_db`` (see the module)."""
    feats = example["features"]
    num_freq = feats.shape[-1]
    src = warp_source_bins(num_freq, a)
    lo = np.minimum(np.floor(src).astype(np.intp), num_freq - 2)
    frac = (src - lo).astype(np.float32)
    out = feats[:, lo] * (1 - frac) + feats[:, lo + 1] * frac
    line = tilt_db * (np.arange(num_freq) / (num_freq - 1) - 0.5)
    out = (out + line.astype(np.float32)).astype(feats.dtype)
    near = np.rint(src).astype(np.intp)
    conf = example.get("confidence")
    return {**example, "features": out, "labels": example["labels"][:, near],
            "confidence": None if conf is None else conf[:, near]}
