"""Confidence in a spatial clustering (paper §2.2, eqs. 4–7), pure and batched.

The leading axis ``B`` indexes mixtures. Every measure lies in [0, 1] and is never NaN:

* :func:`c_cl` (eq. 4) cluster-size equality over the given bins (the stages: every bin of
  the real frames, as the paper counts all T·F bins), scalar per mixture;
* :func:`c_jsd` (eq. 5) Jensen–Shannon divergence (log base 2) between the 1-component and the
  K-component GMM, Monte Carlo, scalar per mixture;
* :func:`c_post` (eq. 6) posterior sharpness, per bin;
* :func:`combined_confidence` (eq. 7) ``(C_cl C_JSD C_post)^alpha`` per bin, and
  :func:`check_alpha`, the one check of its exponent;
* :func:`mean_confidence` ``C_cl C_JSD mean(C_post)``, the per-mixture score of the ensemble;
* :func:`measures` all of the above for any teacher, given its fit term, and
  :func:`confidence_measures` for a :class:`~bootsep.pipeline.spatial.SpatialResult`.

For ``K = 2`` (the paper's setting) eqs. 4 and 6 are exactly the paper's; for ``K > 2`` the
docstrings state the generalisation used (rescaled so that equal split / one-hot gives 1 and
one cluster / uniform gives 0, as for ``K = 2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.gmm import LOG_2PI, GMMParams, log_likelihood, sample_from_variates

if TYPE_CHECKING:  # pragma: no cover
    from bootsep.pipeline.spatial import SpatialResult

__all__ = ["c_cl", "c_jsd", "c_post", "check_alpha", "combined_confidence", "mean_confidence",
           "confidence_measures", "measures"]

_LN2 = float(np.log(2.0))
_JSD_BLOCK = 1 << 14           # Monte Carlo draws per block (per half) in the 1-D path


def c_cl(labels: np.ndarray, mask: np.ndarray, num_components: int) -> np.ndarray:
    """Cluster-size equality (eq. 4) of hard labels over the masked bins.

    ``labels (B, ...)`` integer cluster indices in ``[0, K)`` (checked on masked bins),
    ``mask`` bool of the same shape. With ``f_j`` the fraction of masked bins labelled ``j``:

        ``C_cl = 1 - K / (2 (K - 1)) * sum_j |f_j - 1/K|``

    which for ``K = 2`` equals the paper's ``sum_j (1/N - |1/N - f_j|)``; for ``K > 2`` the
    paper's sum would reach ``2/K - 1 < 0`` at "all in one cluster", so it is rescaled to give
    1 for an equal split and 0 when all bins are in one cluster. No masked bins (or
    ``K = 1``): 0. Returns ``(B,)`` float64.
    """
    labels = np.asarray(labels)
    mask = np.asarray(mask, dtype=bool)
    if labels.shape != mask.shape or labels.ndim < 1:
        raise BootsepError(f"c_cl: labels {labels.shape} and mask {mask.shape} must have the "
                           "same shape (B, ...)")
    K = int(num_components)
    B = labels.shape[0]
    lab, msk = labels.reshape(B, -1), mask.reshape(B, -1)
    n = np.count_nonzero(msk, axis=1)
    picked = lab[msk]                                   # row-major: mixture by mixture
    if picked.size and (picked.min() < 0 or picked.max() >= K):
        raise BootsepError(f"c_cl: fitted bins carry labels outside [0, {K})")
    rows = np.repeat(np.arange(B), n)
    counts = np.bincount(rows * K + picked.astype(np.intp), minlength=B * K).reshape(B, K)
    if K < 2:
        return np.zeros(B)
    f = counts / np.maximum(n, 1)[:, None]
    out = 1.0 - K / (2.0 * (K - 1)) * np.abs(f - 1.0 / K).sum(axis=1)
    return np.where(n > 0, np.clip(out, 0.0, 1.0), 0.0)


def c_jsd(params_k: GMMParams, params_1: GMMParams, n_samples: int, seed=0, *,
          seeds: Sequence | None = None, degenerate: np.ndarray | None = None) -> np.ndarray:
    """Jensen–Shannon divergence (eq. 5, log base 2) between ``P = params_1`` (1 component)
    and ``Q = params_k`` (K components), Monte Carlo with ``n_samples`` draws from each.

    ``JSD = 1/2 E_P[log2 (2p / (p + q))] + 1/2 E_Q[log2 (2q / (p + q))]``, clipped to [0, 1].
    Both GMMs have batch shape ``(B,)``; returns ``(B,)`` float64.

    Randomness: the base variates (``z_P``: ``(n, D)`` normal, then ``u_Q``: ``(n,)``
    uniform, then ``z_Q``: ``(n, D)`` normal) come from ``np.random.default_rng(seed)``
    (``seed``: int, sequence of ints, SeedSequence or Generator; the global RNG is never
    used) and are shared by all mixtures, so a mixture's value depends only on its own
    parameters and the seed, not on the batch it is in. ``seeds``: instead, one seed per
    mixture (length ``B``); mixture ``b`` then gets exactly what ``c_jsd`` of that mixture
    alone with ``seed=seeds[b]`` gives. The Monte Carlo standard error is ``s / sqrt(n_samples)``
    with ``s`` the spread of the per-draw terms (0.2-0.5 for the mixtures in the tests).

    Mixtures flagged in ``degenerate (B,)``, or with non-finite parameters, get 0.
    """
    wq, mq, cq = (np.asarray(a, np.float64) for a in (params_k.weights, params_k.means,
                                                     params_k.covariances))
    wp, mp, cp = (np.asarray(a, np.float64) for a in (params_1.weights, params_1.means,
                                                     params_1.covariances))
    if wq.ndim != 2 or wp.shape != (wq.shape[0], 1) or mp.shape[-1] != mq.shape[-1]:
        raise BootsepError(f"c_jsd: needs a (B,) batch of K-component GMMs and of 1-component "
                           f"GMMs, got weights {wq.shape} and {wp.shape}")
    n = int(n_samples)
    if n < 1:
        raise BootsepError(f"c_jsd: n_samples must be >= 1, got {n_samples}")
    B, D = wq.shape[0], mq.shape[-1]
    ok = np.ones(B, bool)
    for a in (wq, mq, cq, wp, mp, cp):
        ok &= np.isfinite(a.reshape(B, -1)).all(axis=1)
    ok &= (np.diagonal(cq, axis1=-2, axis2=-1) > 0).all(axis=(1, 2))
    ok &= (np.diagonal(cp, axis1=-2, axis2=-1) > 0).all(axis=(1, 2))
    if degenerate is not None:
        ok &= ~np.asarray(degenerate, dtype=bool).reshape(B)
    out = np.zeros(B)
    if not ok.any():
        return out
    if seeds is not None:
        if len(seeds) != B:
            raise BootsepError(f"c_jsd: {len(seeds)} seeds for {B} mixtures")
        var = [_base_variates(np.random.default_rng(s), n, D) for s in seeds]
        zp, uq, zq = (np.stack([v[i] for v in var])[ok] for i in range(3))
    else:
        zp, uq, zq = _base_variates(np.random.default_rng(seed), n, D)
    rows = np.flatnonzero(ok)
    if D == 1:
        jsd = _jsd_1d(wq[rows], mq[rows, :, 0], cq[rows, :, 0, 0], mp[rows, 0, 0],
                      cp[rows, 0, 0, 0], zp[..., 0], uq, zq[..., 0])
    else:
        P = GMMParams(wp[rows], mp[rows], cp[rows])
        Q = GMMParams(wq[rows], mq[rows], cq[rows])
        xp = sample_from_variates(P, np.zeros((1, n)), zp)            # (b, n, D)
        xq = sample_from_variates(Q, uq, zq)
        pts = np.concatenate([xp, xq], axis=1)                         # (b, 2n, D)
        lp, lq = log_likelihood(P, pts), log_likelihood(Q, pts)        # natural log
        jsd = _jsd_terms(lp[:, :n], lq[:, :n], lp[:, n:], lq[:, n:])
    out[rows] = np.clip(np.nan_to_num(jsd, nan=0.0), 0.0, 1.0)
    return out


def _jsd_terms(lp_p, lq_p, lp_q, lq_q):
    """Monte Carlo JSD from log densities at P's draws (``*_p``) and Q's draws (``*_q``):
    ``log2 (2p / (p + q)) = 1 - log2(1 + q / p)`` on P's draws, symmetrically on Q's."""
    tp = _logaddexp(0.0, lq_p - lp_p).mean(axis=-1)
    tq = _logaddexp(0.0, lp_q - lq_q).mean(axis=-1)
    return 1.0 - 0.5 * (tp + tq) / _LN2


def _logaddexp(a, b):
    """``log(e^a + e^b)`` as ``max + log1p(exp(-|a - b|))`` (np.logaddexp is not vectorised
    and ~30x slower here); -inf where both are -inf."""
    top = np.maximum(a, b)
    with np.errstate(invalid="ignore"):
        gap = np.abs(np.subtract(a, b))
    if np.isnan(gap).any():
        gap[np.isnan(gap)] = np.inf                     # both -inf (or +inf)
    np.negative(gap, out=gap)
    np.exp(gap, out=gap)
    np.log1p(gap, out=gap)
    gap += top
    return gap


def _jsd_1d(wq, mq, vq, mp, vp, zp, uq, zq):
    """:func:`c_jsd` for 1-D GMMs: Q ``(b, K)`` weights/means/variances, P ``(b,)`` mean and
    variance; base variates ``zp``, ``uq``, ``zq`` broadcastable to ``(b, n)``. Works on
    blocks of mixtures so the per-draw temporaries stay in cache."""
    b, K = wq.shape
    n = np.shape(zp)[-1]
    zp, uq, zq = (np.broadcast_to(a, (b, n)) for a in (zp, uq, zq))
    sp, iq = np.sqrt(vp), 1.0 / np.sqrt(vq)                            # (b,), (b, K)
    cp = -0.5 * (LOG_2PI + np.log(vp))
    with np.errstate(divide="ignore"):
        cq = np.log(wq) - 0.5 * (LOG_2PI + np.log(vq))                 # (b, K)
    cum = np.cumsum(wq, axis=-1)[:, :-1]
    out = np.empty(b)
    step = max(1, _JSD_BLOCK // max(n, 1))
    for s in range(0, b, step):
        sl = slice(s, min(s + step, b))
        rows = np.arange(sl.stop - s)[:, None]
        comp = (uq[sl, :, None] >= cum[sl, None, :]).sum(-1)            # Q's component per draw
        xp = mp[sl, None] + sp[sl, None] * zp[sl]                        # P's draws
        xq = mq[sl][rows, comp] + zq[sl] / iq[sl][rows, comp]            # Q's draws
        lp_p = cp[sl, None] - 0.5 * zp[sl] * zp[sl]                      # (x - mp)^2 / vp = zp^2
        dz = (xq - mp[sl, None]) / sp[sl, None]
        lp_q = cp[sl, None] - 0.5 * dz * dz
        lq_p, lq_q = (_log_mix(x, cq[sl], mq[sl], iq[sl]) for x in (xp, xq))
        out[sl] = _jsd_terms(lp_p, lq_p, lp_q, lq_q)
    return out


def _log_mix(x, c, m, inv_sd):
    """``log sum_k exp(c_k - (x - m_k)^2 inv_sd_k^2 / 2)`` for ``x (b, n)``, params ``(b, K)``."""
    out = None
    for k in range(c.shape[1]):
        e = (x - m[:, k, None]) * inv_sd[:, k, None]
        e *= e
        e *= -0.5
        e += c[:, k, None]
        out = e if out is None else _logaddexp(out, e)
    return out


def _base_variates(rng: np.random.Generator, n: int, D: int):
    zp = rng.standard_normal((n, D))
    uq = rng.random(n)
    zq = rng.standard_normal((n, D))
    return zp, uq, zq


def c_post(posteriors: np.ndarray) -> np.ndarray:
    """Posterior sharpness (eq. 6) per bin: ``(..., K) -> (...)``.

    ``C_post = K / (K - 1) * (max_k gamma_k - 1/K)``, clipped to [0, 1]: 0 for uniform
    posteriors, 1 for one-hot ones. For ``K = 2`` this is the paper's ``2 |max_k gamma_k - 1/2|``
    (``max_k gamma_k >= 1/2`` there). ``K = 1`` gives 0. float32 in, float32 out.
    """
    g = np.asarray(posteriors)
    dt = g.dtype if np.issubdtype(g.dtype, np.floating) else np.dtype(np.float64)
    K = g.shape[-1]
    if K < 2:
        return np.zeros(g.shape[:-1], dt)
    if K == 2:
        out = np.maximum(g[..., 0], g[..., 1], dtype=dt)
    else:
        out = g.max(axis=-1).astype(dt, copy=False)
    out -= dt.type(1.0 / K)
    out *= dt.type(K / (K - 1.0))
    return np.clip(out, 0.0, 1.0, out=out)


def _per_mixture(x, ndim: int, dt) -> np.ndarray:
    """A per-mixture value (scalar or ``(B,)``...) shaped to broadcast against ``ndim`` axes."""
    x = np.asarray(x, dtype=dt)
    if x.ndim > ndim:
        raise BootsepError(f"a per-mixture confidence of shape {x.shape} does not fit C_post "
                           f"with {ndim} axes")
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def check_alpha(alpha, name: str = "alpha", path=None) -> float:
    """The exponent α of eq. 7 as a float: a finite number >= 0, else a :class:`BootsepError`
    naming ``name`` (e.g. the params key) and ``path`` (the file it came from)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError) as exc:
        raise BootsepError(f"{name} is {alpha!r}; the confidence exponent of eq. 7 must be a "
                           "number >= 0", path) from exc
    if not (math.isfinite(value) and value >= 0):
        raise BootsepError(f"{name} is {value}; the confidence exponent of eq. 7 must be finite "
                           "and >= 0", path)
    return value


def combined_confidence(c_cl, c_jsd, c_post, alpha: float) -> np.ndarray:
    """Eq. 7: ``C(alpha) = (C_cl C_JSD C_post)^alpha`` per bin.

    ``c_cl``, ``c_jsd``: per mixture, scalars or ``(B,)`` (leading axes of ``c_post``);
    ``c_post``: per bin, e.g. ``(T, F)`` or ``(B, T, F)``. The product is clipped to [0, 1]
    first. ``alpha = 0`` gives ones everywhere (also where the product is 0). The result has
    ``c_post``'s float dtype (float32 stays float32).
    """
    cp = np.asarray(c_post)
    dt = cp.dtype if np.issubdtype(cp.dtype, np.floating) else np.dtype(np.float64)
    alpha = check_alpha(alpha)
    prod = cp * _per_mixture(c_cl, cp.ndim, dt)
    prod = prod * _per_mixture(c_jsd, cp.ndim, dt)
    prod = np.asarray(prod, dtype=dt)
    if alpha == 0:
        return np.ones_like(prod)
    np.clip(prod, 0.0, 1.0, out=prod)
    prod[np.isnan(prod)] = 0.0
    if alpha != 1:
        np.power(prod, dt.type(alpha), out=prod)
    return prod


def mean_confidence(c_cl, c_jsd, c_post, valid_mask) -> np.ndarray:
    """Per-mixture confidence ``C_cl * C_JSD * mean(C_post over valid_mask)`` (the score the
    confidence ensemble thresholds, §3.3).

    ``c_post (B, ...)``; ``valid_mask`` bool whose shape is a prefix of ``c_post``'s (frames
    ``(B, T)`` or bins ``(B, T, F)``); no valid bin gives 0. Returns ``(B,)`` float64.
    """
    cp = np.asarray(c_post)
    vm = np.asarray(valid_mask, dtype=bool)
    if vm.shape != cp.shape[:vm.ndim] or vm.ndim < 1:
        raise BootsepError(f"mean_confidence: mask {vm.shape} is not a prefix of C_post {cp.shape}")
    vm = np.broadcast_to(vm.reshape(vm.shape + (1,) * (cp.ndim - vm.ndim)), cp.shape)
    B = cp.shape[0]
    axes = tuple(range(1, cp.ndim))
    total = np.sum(cp, axis=axes, where=vm, dtype=np.float64)
    count = np.count_nonzero(vm.reshape(B, -1), axis=1)
    mean = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    out = np.asarray(c_cl, np.float64) * np.asarray(c_jsd, np.float64) * mean
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def confidence_measures(result: SpatialResult, valid: np.ndarray | None, n_samples: int,
                        seed=0, *, seeds: Sequence | None = None,
                        mean_over: str = "fit") -> dict[str, np.ndarray]:
    """All confidence measures of a batch of the paper's spatial clusterings (see
    :func:`measures`; the fit term is eq. 5's :func:`c_jsd` of the fitted GMMs).

    ``valid (B, T)`` real frames (None: all); C_cl counts every bin of them (eq. 4).
    ``mean_over``: ``'fit'`` (default: the mean of C_post over the fitted bins, those above
    tau, which the clustering actually saw) or ``'valid'`` (over all bins of the valid frames).
    """
    if mean_over not in ("fit", "valid"):
        raise BootsepError(f"mean_over must be 'fit' or 'valid', got {mean_over!r}")
    frames = np.ones(result.labels.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    jsd = c_jsd(result.gmm, result.gmm1, n_samples, seed, seeds=seeds,
                degenerate=result.degenerate)                                        # eq. 5
    return measures(result.labels, result.posteriors, jsd, result.degenerate, frames,
                    result.fit_mask if mean_over == "fit" else frames)


def measures(labels: np.ndarray, posteriors: np.ndarray, fit_term: np.ndarray,
             degenerate: np.ndarray, valid: np.ndarray,
             mean_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Equations 4-6 and the mixture confidence of a padded batch, for any teacher; the one
    implementation that the confidence stage and the separator share.

    ``labels (B, T, F)`` hard labels, ``posteriors (B, T, F, K)``, ``fit_term (B,)`` the
    teacher's fit measure in [0, 1] (eq. 5's C_JSD, or its generalisation: the JSD between the
    teacher's K-source and 1-source models), ``degenerate (B,)``, ``valid (B, T)`` real frames:
    C_cl counts every bin of them, as the paper's eq. 4 counts all T·F bins;
    ``mean_mask`` (``(B, T)`` frames or ``(B, T, F)`` bins) where C_post is averaged.
    Returns ``c_cl (B,)``, ``c_jsd (B,)`` (the fit term), ``c_post (B, T, F)`` float32 (eq. 6;
    0 where posteriors are uniform, e.g. padding), ``mean_c_post (B,)`` and
    ``mean_confidence (B,)`` = ``c_cl * c_jsd * mean_c_post``. Degenerate mixtures get
    ``c_cl = c_jsd = 0``.
    """
    degenerate = np.asarray(degenerate, bool)
    labels = np.asarray(labels)
    B, K = labels.shape[0], posteriors.shape[-1]
    bins = np.broadcast_to(np.asarray(valid, bool)[:, :, None], labels.shape)
    cl = c_cl(labels.reshape(B, -1), bins.reshape(B, -1), K)                             # eq. 4
    cl = np.where(degenerate, 0.0, cl)
    jsd = np.where(degenerate, 0.0, np.clip(np.asarray(fit_term, np.float64), 0.0, 1.0))
    cp = c_post(np.asarray(posteriors, np.float32))                                     # eq. 6
    mean_cp = mean_confidence(np.ones(B), np.ones(B), cp, mean_mask)
    return {"c_cl": cl, "c_jsd": jsd, "c_post": cp, "mean_c_post": mean_cp,
            "mean_confidence": cl * jsd * mean_cp}
