"""Spatial features of a stereo STFT (paper §2.1, eqs. 1–2) and their per-mixture PCA.

All functions are pure and batched: the leading axis ``B`` indexes mixtures, ``T`` frames,
``F`` frequency bins, ``N`` any flattened set of bins. Complex64 input gives float32 output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bootsep.errors import BootsepError

__all__ = [
    "PCAFit", "ipd", "log_magnitude_db", "relative_db", "fit_mask", "pca_fit_ragged",
    "pca_transform_angle",
]


def _real_dtype(x: np.ndarray) -> np.dtype:
    """float32 for float32/complex64 (and smaller) input, float64 otherwise."""
    small = (np.float16, np.float32, np.complex64)
    return np.dtype(np.float32) if np.asarray(x).dtype in small else np.dtype(np.float64)


def ipd(x0: np.ndarray, x1: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Interchannel phase difference (eq. 1) in [-pi, pi]; any (broadcastable) shape; 0 where a
    channel is 0. (``-pi`` and ``pi`` are the same angle; which one appears depends on the sign
    of a zero imaginary part, and no later step can tell them apart.) ``out``: optional real
    array of the result's shape that receives it (e.g. float32 for complex64 input)."""
    z = np.multiply(np.conj(x1), x0)
    # eq. (1): theta = angle(X0 * conj(X1)); "+ 0.0" turns a -0.0 real part into +0.0, else
    # arctan2(+-0, -0) = +-pi where a channel is 0 (x0 = 0 and x1 in the third quadrant, say)
    return np.arctan2(z.imag, z.real + 0.0, out=out)


def log_magnitude_db(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """``20 log10 max(|x|, eps)`` in dB, any shape; ``eps`` floors silence at ``20 log10 eps``."""
    mag = np.abs(x)
    np.maximum(mag, np.asarray(eps, dtype=mag.dtype), out=mag)
    np.log10(mag, out=mag)
    mag *= 20  # eq. (2): X_log = 20 log10 |X0|
    return mag


def relative_db(logmag: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """dB relative to each mixture's loudest valid bin, so a threshold tau is scale-free.

    ``logmag`` is ``(B, ...)``; ``valid`` is a bool mask whose shape is a prefix of
    ``logmag.shape`` (e.g. ``(B, T)`` frames for ``(B, T, F)`` bins) or ``None`` (all valid).
    Returns ``logmag - max_valid(logmag)`` per mixture (``<= 0`` on valid bins) and ``-inf``
    on invalid ones. A mixture without valid bins gets ``-inf`` everywhere.
    """
    logmag = np.asarray(logmag)
    axes = tuple(range(1, logmag.ndim))
    if valid is None:
        ref = logmag.max(axis=axes, keepdims=True, initial=-np.inf)
        ref[~np.isfinite(ref)] = 0.0              # all -inf: stay -inf, not NaN
        with np.errstate(invalid="ignore"):
            return logmag - ref
    vm = _expand_mask(valid, logmag.shape)
    ref = np.max(logmag, axis=axes, keepdims=True, where=vm, initial=-np.inf)
    ref[~np.isfinite(ref)] = 0.0
    with np.errstate(invalid="ignore"):
        out = logmag - ref
    out[~np.broadcast_to(vm, out.shape)] = -np.inf
    return out


def fit_mask(logmag: np.ndarray, valid: np.ndarray | None, tau_db: float) -> np.ndarray:
    """Bins the GMM is fitted on (§2.1): valid and more than ``tau_db`` above the mixture's
    loudest valid bin, i.e. ``relative_db(logmag, valid) > tau_db`` without building it.

    ``logmag (B, ...)`` dB; ``valid`` as in :func:`relative_db`. NaN bins are never selected;
    a mixture without valid bins selects nothing.
    """
    logmag = np.asarray(logmag)
    axes = tuple(range(1, logmag.ndim))
    vm = None if valid is None else _expand_mask(valid, logmag.shape)
    ref = np.max(logmag, axis=axes, keepdims=True, initial=-np.inf,
                 where=True if vm is None else vm)
    with np.errstate(invalid="ignore"):
        out = logmag > (ref.astype(np.float64) + float(tau_db)).astype(logmag.dtype)
    if vm is not None:
        out &= vm
    return out


def _expand_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A bool mask whose shape is a prefix of ``shape``, with trailing axes added to broadcast."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape[: mask.ndim]:
        raise BootsepError(f"mask shape {mask.shape} is not a prefix of data shape {shape}")
    return mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))


@dataclass(frozen=True)
class PCAFit:
    """Per-mixture 2-D PCA: ``phi = (feat - mean) . component``.

    mean: ``(B, 2)``; component: ``(B, 2)`` unit first principal axis, sign chosen so its
    largest-|value| coordinate is positive (the first one on a tie, as scikit-learn's
    ``svd_flip``); explained_variance: ``(B,)`` its eigenvalue (population covariance, /n).
    """

    mean: np.ndarray
    component: np.ndarray
    explained_variance: np.ndarray


def _top_eigvec_2x2(a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Largest eigenpair of ``[[a, b], [b, c]]`` (arrays ``(B,)``), closed form, no cancellation.

    Isotropic or zero matrices (no preferred axis) get the axis ``(1, 0)``.
    """
    half = 0.5 * (a - c)
    disc = np.hypot(half, b)                       # half the eigenvalue gap
    lam = 0.5 * (a + c) + disc
    v = np.where((a >= c)[:, None],
                 np.stack([half + disc, b], axis=-1),     # (lam - c, b): first entry >= disc
                 np.stack([b, disc - half], axis=-1))     # (b, lam - a): second entry >= disc
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    flat = (disc <= 0) | ~np.isfinite(disc)
    v = np.where(flat[:, None], np.array([1.0, 0.0]), v / np.where(norm > 0, norm, 1.0))
    big = np.argmax(np.abs(v), axis=-1)
    sign = np.where(np.take_along_axis(v, big[:, None], axis=-1) < 0, -1.0, 1.0)
    return lam, v * sign


def pca_fit_ragged(feats: np.ndarray, rows: np.ndarray, n_rows: int) -> PCAFit:
    """Per-mixture PCA of ragged points: ``feats (M, 2)`` where point ``i`` belongs to mixture
    ``rows[i]`` (``0 <= rows < n_rows``, any order). Masked-out bins are simply not passed.
    No point: mean 0, axis (1, 0), variance 0; one point or zero variance: mean = that value,
    axis (1, 0), variance 0.

    Accumulates in float64 and centres before forming the scatter (two passes), so a cloud
    whose spread is tiny compared with its mean (e.g. ``cos theta`` near 1) keeps its axis.
    """
    feats = np.asarray(feats)
    rows = np.asarray(rows, dtype=np.intp)
    if feats.ndim != 2 or feats.shape[1] != 2 or rows.shape != feats.shape[:1]:
        raise BootsepError(f"ragged PCA needs feats (M, 2) and rows (M,), got {feats.shape} "
                           f"and {rows.shape}")
    n = np.bincount(rows, minlength=n_rows).astype(np.float64)
    nz = np.maximum(n, 1.0)
    # (bincount of no points returns int64 zeros, hence the cast)
    mean = np.stack([np.bincount(rows, feats[:, j], n_rows) for j in range(2)], axis=-1)
    mean = mean.astype(np.float64) / nz[:, None]
    d0 = feats[:, 0] - mean[rows, 0]
    d1 = feats[:, 1] - mean[rows, 1]
    g00 = np.bincount(rows, d0 * d0, n_rows) / nz
    g01 = np.bincount(rows, d0 * d1, n_rows) / nz
    g11 = np.bincount(rows, d1 * d1, n_rows) / nz
    lam, comp = _top_eigvec_2x2(g00, g01, g11)
    lam = np.where(n > 0, np.maximum(lam, 0.0), 0.0)
    return PCAFit(mean=mean, component=comp, explained_variance=lam)


def pca_transform_angle(fit: PCAFit, theta: np.ndarray,
                        out: np.ndarray | None = None) -> np.ndarray:
    """PCA projection of the IPD features ``(cos theta, sin theta)`` straight from the angle.

    With the unit axis ``c = (cos beta, sin beta)``, ``(cos theta, sin theta) . c = cos(theta -
    beta)``, so ``phi = cos(theta - beta) - mean . c``: one cosine per bin instead of a cosine, a
    sine and a dot product. ``theta (B, ...)``; float32 in, float32 out (into ``out`` if given,
    an array of ``theta``'s shape and that dtype).
    """
    theta = np.asarray(theta)
    dt = _real_dtype(theta)
    beta = np.arctan2(fit.component[:, 1], fit.component[:, 0])
    offset = np.einsum("bd,bd->b", fit.mean, fit.component)
    shape = (-1,) + (1,) * (theta.ndim - 1)
    out = np.subtract(theta, beta.astype(dt).reshape(shape), out=out, dtype=dt)
    np.cos(out, out=out)
    out -= offset.astype(dt).reshape(shape)
    return out
