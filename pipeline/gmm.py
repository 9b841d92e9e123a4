"""Batched full-covariance Gaussian mixtures fitted by EM (paper §2.1, eq. 3).

Shapes: ``B`` mixtures (any leading batch shape is accepted and flattened), ``N`` points,
``D`` features, ``K`` components. Every mixture is fitted independently, only on the points
where its ``mask`` is True; masked-out points may hold anything (NaN, inf).

EM follows scikit-learn's ``GaussianMixture(covariance_type='full')`` step for step, so that
from the same initial parameters it gives the same fit: ``reg_covar`` is added to the
covariance diagonals, ``10 * eps`` to the component counts, and a mixture stops (and keeps
its parameters from that M-step) at the first iteration whose mean log-likelihood (computed
in the E-step, i.e. at the parameters before the M-step) changed by less than ``tol``;
``lower_bound`` is that last E-step value, as sklearn's ``lower_bound_``.

Fast paths: ``K = 1`` is the closed-form Gaussian fit; ``D = 1, K = 2`` (the paper's case)
computes the posterior as a logistic function of a quadratic in ``x``; the M-step and the
mean log-likelihood come from per-component weighted sums of ``1, x, x^2`` and the summed
posterior entropy (``log p = sum_k gamma_k (log w_k N_k - log gamma_k)``, so no large terms
cancel), taken about each component's current mean. Per-point work is in the data's
precision (float32 data stays float32) over cache-sized blocks, block sums are accumulated
in float64. Everything else goes through the general float64 path (batched Cholesky).

Degenerate mixtures (``degenerate`` flag): fewer than 2 masked points, or all masked points
identical. They are not fitted; they get equal weights ``1/K``, every mean equal to the
common point (0 when there is none) and covariance ``reg_covar * I`` (``I`` when there is no
point or ``reg_covar == 0``), so their posteriors are exactly uniform. They report
``converged=True``, ``n_iter=0`` and ``lower_bound`` = the mean log-likelihood of the points
under those parameters (0.0 when there is no point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.padding import frames_valid

__all__ = ["GMMParams", "GMMFit", "fit_gmm", "log_likelihood", "posteriors", "sample_from_variates"]

LOG_2PI = float(np.log(2.0 * np.pi))
_NK_EPS = 10.0 * np.finfo(np.float64).eps     # sklearn: nk = resp.sum(0) + 10 * eps
_BLOCK_ELEMS = 1 << 18                         # points per block (all mixtures), D=1 fast path
_POST_BLOCK = 1 << 16                          # points per block when evaluating posteriors
_MAX_BLOCK = 4096                              # points per mixture and block (float32 partial sums)
_EXP_CLIP = {np.dtype(np.float32): 80.0, np.dtype(np.float64): 700.0}


@dataclass(frozen=True)
class GMMParams:
    """Gaussian mixture parameters, float64.

    weights: ``(..., K)`` summing to 1; means: ``(..., K, D)``; covariances: ``(..., K, D, D)``.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    def __post_init__(self):
        w, m, c = (np.asarray(a) for a in (self.weights, self.means, self.covariances))
        if m.shape[:-1] != w.shape or c.shape != m.shape + m.shape[-1:]:
            raise BootsepError(f"inconsistent GMM parameter shapes: weights {w.shape}, "
                               f"means {m.shape}, covariances {c.shape}")

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return np.shape(self.weights)[:-1]

    @property
    def n_components(self) -> int:
        return np.shape(self.weights)[-1]

    @property
    def n_features(self) -> int:
        return np.shape(self.means)[-1]

    def permute(self, order: np.ndarray) -> GMMParams:
        """Reorder components per mixture: ``order (..., K)`` gives the old index of each new
        one."""
        order = np.asarray(order)
        return GMMParams(
            weights=np.take_along_axis(self.weights, order, axis=-1),
            means=np.take_along_axis(self.means, order[..., None], axis=-2),
            covariances=np.take_along_axis(self.covariances, order[..., None, None], axis=-3))


@dataclass(frozen=True)
class GMMFit:
    """Result of :func:`fit_gmm`; every array has the batch shape ``(...)`` of the data.

    converged: bool; n_iter: int EM iterations run; lower_bound: float64 mean log-likelihood
    per masked point (sklearn's ``lower_bound_``); degenerate: bool (see module docstring);
    n_points: int number of masked points.
    """

    params: GMMParams
    converged: np.ndarray
    n_iter: np.ndarray
    lower_bound: np.ndarray
    degenerate: np.ndarray
    n_points: np.ndarray


# --------------------------------------------------------------------------------------
# public API


def fit_gmm(x: np.ndarray, mask: np.ndarray | None = None, n_components: int = 2, *,
            max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
            init: str | GMMParams = "quantile") -> GMMFit:
    """Fit a K-component full-covariance GMM by EM to each mixture of ``x (..., N, D)``.

    ``mask (..., N)`` bool selects the points each mixture is fitted on (None: all).
    ``init``: ``'quantile'`` (deterministic: points ordered by their first coordinate are cut
    into K equal-count slices, whose weights/means/covariances start EM) or a
    :class:`GMMParams` (used as is, as sklearn's ``weights_init``/``means_init``/
    ``precisions_init``). No randomness: the same data give the same fit.
    """
    x = np.asarray(x)
    if x.ndim < 3:
        raise BootsepError(f"GMM data must be (..., N, D), got shape {x.shape}")
    batch, (n_pts, dim) = x.shape[:-2], x.shape[-2:]
    B = int(np.prod(batch, dtype=np.int64))
    K = int(n_components)
    if K < 1 or max_iter < 1 or tol < 0 or reg_covar < 0:
        raise BootsepError(f"bad GMM options: n_components={n_components}, max_iter={max_iter}, "
                           f"tol={tol}, reg_covar={reg_covar}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape[:-1]:
            raise BootsepError(f"GMM mask shape {mask.shape} does not match data {x.shape}")
        mask = mask.reshape(B, n_pts)
    work = np.dtype(np.float32) if x.dtype in (np.float16, np.float32) else np.dtype(np.float64)
    xp, pm, counts = _pack(x.reshape(B, n_pts, dim), mask, work)
    degenerate = _degenerate_rows(xp, pm, counts)
    if isinstance(init, GMMParams):
        init = _flatten_params(init, B, K, dim)
    elif init != "quantile":
        raise BootsepError(f"unknown GMM init '{init}' (quantile or GMMParams)")

    if K == 1 and isinstance(init, str):
        w, mu, cov = _m_step(xp.astype(np.float64), _weights_of(pm, xp)[..., None], reg_covar)
        lb = _gaussian_mean_loglik(mu, cov, counts, reg_covar)
        res = (w, mu, cov, np.ones(B, bool), np.ones(B, np.int64), lb)
    else:
        p0 = init if isinstance(init, tuple) else _quantile_init(xp, pm, counts, K, reg_covar)
        if dim == 1 and K == 2:
            res = _em_1d2(xp[..., 0], pm, counts, p0, ~degenerate, max_iter, tol, reg_covar)
        else:
            res = _em_general(xp, pm, counts, p0, ~degenerate, max_iter, tol, reg_covar)
    w, mu, cov, conv, n_iter, lb = _apply_degenerate(res, degenerate, xp, counts, reg_covar)
    return GMMFit(
        params=GMMParams(weights=w.reshape(batch + (K,)), means=mu.reshape(batch + (K, dim)),
                         covariances=cov.reshape(batch + (K, dim, dim))),
        converged=conv.reshape(batch), n_iter=n_iter.reshape(batch),
        lower_bound=lb.reshape(batch), degenerate=degenerate.reshape(batch),
        n_points=counts.reshape(batch))


def log_likelihood(params: GMMParams, x: np.ndarray) -> np.ndarray:
    """``log p(x) = log sum_k w_k N(x | mu_k, Sigma_k)``: ``(..., N, D) -> (..., N)`` float64."""
    w, mu, cov, batch, xf = _flat_for_eval(params, x)
    lp = _log_joint(w, mu, cov, xf)
    return _logsumexp(lp).reshape(batch + lp.shape[1:2])


def posteriors(params: GMMParams, x: np.ndarray, out: np.ndarray | None = None,
               labels_out: np.ndarray | None = None) -> np.ndarray:
    """Posterior of each component for every point (eq. 3): ``(..., N, D) -> (..., N, K)``.

    Rows sum to 1. float32 data gives float32 posteriors, anything else float64. For D = 1,
    K = 2 the posterior is the logistic function of a quadratic in x (no log-sum-exp pass),
    evaluated in cache-sized blocks; ``out`` (that shape and dtype, C-contiguous) receives the
    result without allocating a full-size array (D = 1, K = 2 only; otherwise it is filled
    from a temporary). ``labels_out`` (shape ``(..., N)``, integer or bool) optionally
    receives the argmax over components of the returned posteriors (first one on ties).
    """
    w, mu, cov, batch, xf = _flat_for_eval(params, x)
    K, D = mu.shape[-2:]
    dt = np.dtype(np.float32) if xf.dtype in (np.float16, np.float32) else np.dtype(np.float64)
    shape = batch + xf.shape[1:2] + (K,)
    if out is not None and (out.shape != shape or out.dtype != dt or not out.flags.c_contiguous):
        raise BootsepError(f"posteriors: out must be a C-contiguous {dt} array of shape {shape}")
    if D == 1 and K == 2:
        Bf, N = xf.shape[:2]
        shift = 0.5 * (mu[:, 0, 0] + mu[:, 1, 0])
        coef = _quad_coefs(w, mu[..., 0] - shift[:, None], cov[..., 0, 0])
        out = np.empty((Bf, N, 2), dt) if out is None else out.reshape(Bf, N, 2)
        step = max(1, _POST_BLOCK // max(N, 1))        # whole mixtures per cache-sized block
        for s in range(0, Bf, step):
            sl = slice(s, min(s + step, Bf))
            u = np.subtract(xf[sl, :, 0], shift[sl, None].astype(dt), dtype=dt)
            g1, g0 = np.empty_like(u), np.empty_like(u)
            _sigmoid_posterior(u, tuple(c[sl] for c in coef), g1, g0)
            out[sl, :, 0] = g0                          # contiguous math, one interleaving copy
            out[sl, :, 1] = g1
            if labels_out is not None:
                lab = labels_out.reshape(Bf, N)[sl]
                np.greater(g1, g0, out=lab, casting="unsafe")
        return out.reshape(batch + out.shape[1:])
    lp = _log_joint(w, mu, cov, xf)
    lp -= _logsumexp(lp)[..., None]          # eq. (3): gamma_j = P(phi|z_j) P(z_j) / P(phi)
    res = np.exp(lp, out=lp).astype(dt, copy=False).reshape(shape)
    if out is not None:
        out[...] = res
        res = out
    if labels_out is not None:
        labels_out[...] = res.argmax(axis=-1)
    return res


def sample_from_variates(params: GMMParams, u: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Transform base variates into GMM samples: ``u (..., n)`` uniform in [0, 1) picks the
    component (inverse CDF of the weights), ``z (..., n, D)`` standard normal is mapped by that
    component's mean and Cholesky factor. Returns ``(..., n, D)`` float64."""
    w, mu, cov = _flatten_params(params)
    batch = params.batch_shape
    B, K, D = mu.shape
    u = np.broadcast_to(np.asarray(u, np.float64), batch + np.shape(u)[-1:]).reshape(B, -1)
    z = np.broadcast_to(np.asarray(z, np.float64), batch + np.shape(z)[-2:]).reshape(B, -1, D)
    n = u.shape[1]
    chol = _cholesky(cov)
    cw = np.cumsum(w, axis=-1)[:, :-1]
    comp = (u[..., None] >= cw[:, None, :]).sum(-1)                    # (B, n)
    rows = np.arange(B)[:, None]
    if D == 1:
        out = mu[rows, comp] + chol[rows, comp, 0] * z
    else:
        out = mu[rows, comp] + np.einsum("bnde,bne->bnd", chol[rows, comp], z)
    return out.reshape(batch + (n, D))


# --------------------------------------------------------------------------------------
# data preparation


def _pack(x: np.ndarray, mask: np.ndarray | None, work: np.dtype):
    """Move each mixture's masked points to the front: ``xp (B, Np, D)`` zero-padded,
    ``pm (B, Np)`` True on real points (None when nothing is padded), ``counts (B,)``."""
    B, N, D = x.shape
    if mask is None or mask.all():
        xp, pm, counts = x.astype(work, copy=False), None, np.full(B, N, np.int64)
    else:
        counts = mask.sum(axis=1).astype(np.int64)
        n_max = max(int(counts.max(initial=0)), 1)
        pm = frames_valid(counts, n_max)
        xp = np.zeros((B, n_max, D), work)
        xp[pm] = x[mask]                    # both masks are walked in row-major order
        if pm.all():
            pm = None
    if not np.isfinite(xp).all():
        raise BootsepError("GMM data has NaN or infinite values among the masked-in points")
    return xp, pm, counts


def _weights_of(pm: np.ndarray | None, xp: np.ndarray) -> np.ndarray:
    return np.ones(xp.shape[:2]) if pm is None else pm.astype(np.float64)


def _degenerate_rows(xp, pm, counts) -> np.ndarray:
    differs = xp != xp[:, :1, :]
    if pm is not None:
        differs &= pm[:, :, None]
    return (counts < 2) | ~differs.any(axis=(1, 2))


def _flatten_params(params: GMMParams, B: int | None = None, K: int | None = None,
                    D: int | None = None):
    w = np.asarray(params.weights, np.float64)
    mu = np.asarray(params.means, np.float64)
    cov = np.asarray(params.covariances, np.float64)
    k, d = mu.shape[-2:]
    w, mu, cov = w.reshape(-1, k), mu.reshape(-1, k, d), cov.reshape(-1, k, d, d)
    if B is not None and (w.shape[0] != B or k != K or d != D):
        raise BootsepError(f"GMM init has {w.shape[0]} mixtures x {k} components x {d} features, "
                           f"data needs {B} x {K} x {D}")
    if B is not None and not np.allclose(w.sum(-1), 1.0, atol=1e-6):
        raise BootsepError("GMM init weights do not sum to 1")
    return w, mu, cov


def _flat_for_eval(params: GMMParams, x):
    x = np.asarray(x)
    batch = params.batch_shape
    w, mu, cov = _flatten_params(params)
    if x.shape[: len(batch)] != batch or x.ndim != len(batch) + 2 or x.shape[-1] != mu.shape[-1]:
        raise BootsepError(f"points of shape {x.shape} do not fit GMM parameters with batch "
                           f"shape {batch} and {mu.shape[-1]} features")
    return w, mu, cov, batch, x.reshape((w.shape[0],) + x.shape[-2:])


# --------------------------------------------------------------------------------------
# linear algebra and the general path


def _cholesky(cov: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of ``(..., D, D)``; non-positive-definite ones are repaired by
    raising their eigenvalues to at least 1e-12 times the largest (sklearn would raise)."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError as exc:
        if not np.isfinite(cov).all():
            raise BootsepError("GMM covariance has NaN or infinite values") from exc
        val, vec = np.linalg.eigh(cov)
        floor = np.maximum(1e-12 * np.abs(val).max(-1, keepdims=True), 1e-300)
        val = np.maximum(val, floor)
        return np.linalg.cholesky((vec * val[..., None, :]) @ np.swapaxes(vec, -1, -2))


def _precision_cholesky(cov: np.ndarray):
    """``(U, log_det)``: U upper-triangular with ``U U^T = cov^-1`` (sklearn's
    ``precisions_cholesky_``) and ``log det U``."""
    chol = _cholesky(cov)
    prec_chol = np.swapaxes(np.linalg.inv(chol), -1, -2)
    log_det = -np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
    return prec_chol, log_det


def _log_gauss(x: np.ndarray, mu: np.ndarray, prec_chol: np.ndarray, log_det: np.ndarray):
    """``x (B, N, D)``, params ``(B, K, ...)`` -> ``log N(x | mu_k, Sigma_k)`` ``(B, N, K)``."""
    B, N, D = x.shape
    K = mu.shape[1]
    out = np.empty((B, N, K))
    for k in range(K):          # a loop over components, not mixtures
        y = np.einsum("bnd,bde->bne", x, prec_chol[:, k])
        y -= np.einsum("bd,bde->be", mu[:, k], prec_chol[:, k])[:, None, :]
        out[:, :, k] = -0.5 * (D * LOG_2PI + np.einsum("bne,bne->bn", y, y)) + log_det[:, k, None]
    return out


def _log_joint(w: np.ndarray, mu: np.ndarray, cov: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``log w_k + log N(x | mu_k, Sigma_k)`` ``(B, N, K)`` float64 for points ``x (B, N, D)``."""
    prec_chol, log_det = _precision_cholesky(cov)
    lp = _log_gauss(x.astype(np.float64), mu, prec_chol, log_det)
    with np.errstate(divide="ignore"):
        lp += np.log(w)[:, None, :]
    return lp


def _logsumexp(a: np.ndarray) -> np.ndarray:
    """log-sum-exp over the last axis, ``-inf`` rows stay ``-inf``."""
    top = a.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(a - top).sum(axis=-1)) + top[..., 0]


def _m_step(x: np.ndarray, resp: np.ndarray, reg: float):
    """sklearn's ``_estimate_gaussian_parameters`` (full) + weight normalisation, batched.

    ``x (B, N, D)`` float64, ``resp (B, N, K)`` (zero on padding) -> weights, means, covs.
    """
    B, N, D = x.shape
    K = resp.shape[-1]
    nk = resp.sum(axis=1) + _NK_EPS
    means = np.einsum("bnk,bnd->bkd", resp, x) / nk[..., None]
    cov = np.empty((B, K, D, D))
    for k in range(K):
        diff = x - means[:, k, None, :]
        cov[:, k] = np.einsum("bn,bnd,bne->bde", resp[:, :, k], diff, diff) / nk[:, k, None, None]
    cov[..., np.arange(D), np.arange(D)] += reg
    return nk / nk.sum(axis=1, keepdims=True), means, cov


def _gaussian_mean_loglik(mu, cov, counts, reg) -> np.ndarray:
    """Mean log-likelihood of the points under the one-component fit ``(mu, cov)`` that
    :func:`_m_step` made from them, in closed form: ``-(D log 2 pi + log det S + tr(S^-1 E))/2``
    with ``E`` the points' scatter about ``mu`` divided by their count."""
    D = mu.shape[-1]
    n = np.maximum(counts, 1).astype(np.float64)
    scatter = cov[:, 0] - reg * np.eye(D)
    scatter *= ((n + _NK_EPS) / n)[:, None, None]
    prec_chol, log_det = _precision_cholesky(cov[:, 0])
    trace = np.einsum("bij,bik,bjk->b", scatter, prec_chol, prec_chol)
    return log_det - 0.5 * (D * LOG_2PI + trace)


class _Progress:
    """Per-mixture EM bookkeeping shared by both EM paths: which rows still iterate, their
    last lower bound, iteration counts, convergence, and when to compact the working set."""

    def __init__(self, active: np.ndarray):
        B = active.shape[0]
        self.rows = np.flatnonzero(active)            # working rows (indices into B)
        self.live = np.ones(self.rows.size, bool)     # which working rows still iterate
        self.lower_bound = np.full(B, -np.inf)
        self.n_iter = np.zeros(B, np.int64)
        self.converged = ~active

    def compact(self, fraction: float = 0.5) -> np.ndarray | None:
        """Drop finished rows when at most ``fraction`` of the working set still iterates;
        returns the boolean selector to apply to per-working-row arrays, or None."""
        if self.live.all() or self.live.sum() > fraction * self.rows.size:
            return None
        keep = self.live
        self.rows, self.live = self.rows[keep], np.ones(int(keep.sum()), bool)
        return keep

    def update(self, it: int, lb_new: np.ndarray, tol: float) -> np.ndarray:
        """Record E-step lower bounds of the working rows; returns the rows (into B) updated."""
        upd = self.rows[self.live]
        change = lb_new[self.live] - self.lower_bound[upd]
        self.lower_bound[upd] = lb_new[self.live]
        self.n_iter[upd] = it
        done = np.abs(change) < tol
        self.converged[upd[done]] = True
        live_idx = np.flatnonzero(self.live)
        self.live[live_idx[done]] = False
        return upd


def _em_general(xp, pm, counts, p0, active, max_iter, tol, reg):
    """Batched EM for any D, K in float64. Returns (w, mu, cov, converged, n_iter, lower_bound)."""
    w, mu, cov = (a.copy() for a in p0)
    prec_chol, log_det = _precision_cholesky(cov)
    prog = _Progress(active)
    x = xp[prog.rows].astype(np.float64)
    wv = _weights_of(pm, xp)[prog.rows]
    n = np.maximum(counts, 1).astype(np.float64)
    for it in range(1, max_iter + 1):
        if not prog.live.any():
            break
        keep = prog.compact()
        if keep is not None:
            x, wv = x[keep], wv[keep]
        r = prog.rows
        lp = _log_gauss(x, mu[r], prec_chol[r], log_det[r]) + np.log(w[r])[:, None, :]
        lse = _logsumexp(lp)
        lb_new = (lse * wv).sum(axis=1) / n[r]                      # E-step: mean log p(x)
        resp = np.exp(lp - lse[..., None]) * wv[..., None]
        w_n, mu_n, cov_n = _m_step(x, resp, reg)
        pc_n, ld_n = _precision_cholesky(cov_n)
        live = prog.live.copy()
        upd = prog.update(it, lb_new, tol)
        w[upd], mu[upd], cov[upd] = w_n[live], mu_n[live], cov_n[live]
        prec_chol[upd], log_det[upd] = pc_n[live], ld_n[live]
    return w, mu, cov, prog.converged, prog.n_iter, prog.lower_bound


# --------------------------------------------------------------------------------------
# initialisation


def _quantile_init(xp, pm, counts, K, reg):
    """Cut each mixture's points, ordered by their first coordinate, into K equal-count slices;
    each slice's share, mean and covariance (+ reg) start one component. No randomness."""
    B, n_max, D = xp.shape
    key = xp[..., 0].copy()
    if pm is not None:
        key[~pm] = np.inf
    if D == 1:
        xs = np.sort(key, axis=1)[..., None]
    else:
        xs = np.take_along_axis(xp, np.argsort(key, axis=1, kind="stable")[..., None], axis=1)
    if pm is not None:
        xs[~pm] = 0.0                                   # padding sorted to the tail
    n = np.maximum(counts, 1)[:, None]
    kk = np.arange(K)[None, :]
    lo = np.minimum(kk * n // K, n - 1)
    hi = np.maximum((kk + 1) * n // K, lo + 1)          # >= 1 point per slice
    pos = np.arange(n_max)[None, :]
    size = (hi - lo).astype(np.float64)
    mu = np.empty((B, K, D))
    cov = np.empty((B, K, D, D))
    for k in range(K):
        sk = ((pos >= lo[:, k, None]) & (pos < hi[:, k, None])).astype(xs.dtype)
        mu[:, k] = np.einsum("bn,bnd->bd", sk, xs) / size[:, k, None]
        diff = xs - mu[:, k, None, :].astype(xs.dtype)
        cov[:, k] = np.einsum("bn,bnd,bne->bde", sk, diff, diff) / size[:, k, None, None]
    cov[..., np.arange(D), np.arange(D)] += reg
    return size / size.sum(axis=1, keepdims=True), mu, cov


def _apply_degenerate(res, degenerate, xp, counts, reg):
    w, mu, cov, conv, n_iter, lb = res
    if not degenerate.any():
        return res
    K, D = mu.shape[-2:]
    d = degenerate
    has = counts > 0
    point = np.where(has[:, None], xp[:, 0, :].astype(np.float64), 0.0)          # (B, D)
    var = np.where(has & (reg > 0), reg, 1.0)
    w, mu, cov = w.copy(), mu.copy(), cov.copy()
    w[d] = 1.0 / K
    mu[d] = point[d][:, None, :]
    cov[d] = var[d][:, None, None, None] * np.eye(D)
    conv, n_iter, lb = conv.copy(), n_iter.copy(), lb.copy()
    conv[d], n_iter[d] = True, 0
    lb[d] = np.where(has[d], -0.5 * D * (LOG_2PI + np.log(var[d])), 0.0)
    return w, mu, cov, conv, n_iter, lb


# --------------------------------------------------------------------------------------
# D = 1, K = 2 fast path


def _quad_coefs(w, m, v):
    """Coefficients of ``a(u) = log w0 N(u|m0,v0) - log w1 N(u|m1,v1) = A u^2 + B u + C``.

    ``w, m, v``: ``(B, 2)`` float64 (means relative to the same shift as u). Returns three
    ``(B, 1)`` float64 arrays; the posterior of component 1 is ``1 / (1 + exp(a))``.
    """
    p0, p1 = 1.0 / v[:, 0], 1.0 / v[:, 1]
    m0, m1 = m[:, 0], m[:, 1]
    with np.errstate(divide="ignore"):
        log_w = np.log(w)
    A = 0.5 * (p1 - p0)
    Bc = p0 * m0 - p1 * m1
    C = 0.5 * (p1 * m1 * m1 - p0 * m0 * m0) + (log_w[:, 0] - log_w[:, 1]) \
        + 0.5 * (np.log(v[:, 1]) - np.log(v[:, 0]))
    return A[:, None], Bc[:, None], C[:, None]


def _sigmoid_posterior(u, coef, r1, r0=None, a=None):
    """gamma_1 = 1/(1+exp(a(u))) into ``r1`` (and gamma_0 into ``r0``); returns clipped a(u)."""
    dt = u.dtype
    A, Bc, C = (c.astype(dt) for c in coef)
    a = np.multiply(u, A, out=a)
    a += Bc
    a *= u
    a += C
    np.minimum(a, _EXP_CLIP[dt], out=a)
    if r0 is None:
        np.exp(a, out=r1)
        r1 += 1
    else:
        np.exp(a, out=r0)
        np.add(r0, 1, out=r1)
    np.reciprocal(r1, out=r1)                      # eq. (3) for K = 2: logistic of a quadratic
    if r0 is not None:
        r0 *= r1                                   # exp(a) / (1 + exp(a)), exact in both tails
    return a


class _EStep1D2:
    """E-step sums of the D = 1, K = 2 fast path, with reusable block buffers.

    For points ``u (Bw, Np)`` (0/1 weights ``wv`` or None) and the current parameters it
    returns ``sums (Bw, 2, 3)`` float64, ``sums[:, k] = sum_i w_i gamma_ik (1, d_ik, d_ik^2)``
    with ``d_ik = u_i - m_k`` (deviations from each component's CURRENT mean, so the M-step
    variance never subtracts two large numbers), and ``(Bw,)`` ``sum_i w_i sum_k gamma_ik log
    gamma_ik``. The posterior log-odds is ``a = log w_0 N_0 - log w_1 N_1 = c + d_1^2 / (2 v_1)
    - d_0^2 / (2 v_0)``. Per-point work is in the data's precision over blocks of at most
    ``_MAX_BLOCK`` points per mixture (short float32 partial sums, added in float64).
    """

    def __init__(self, dt: np.dtype, n_rows: int, n_max: int):
        self.dt = dt
        self.step = max(256, min(n_max, _MAX_BLOCK, _BLOCK_ELEMS // max(n_rows, 1)))
        self.P = np.empty((n_rows, 2, 3, self.step), dt)   # per component: weight, d, d^2
        self.G = np.empty((n_rows, 3, self.step), dt)      # gamma_0, sum_k g log g, gamma_1
        self.a = np.empty((n_rows, self.step), dt)
        self.t = np.empty((n_rows, self.step), dt)
        self.P[:, :, 0] = 1

    def __call__(self, u, wv, w, m, v):
        Bw, n_max = u.shape
        dt, step = self.dt, self.step
        h = (0.5 / v).astype(dt)                               # (Bw, 2)
        with np.errstate(divide="ignore"):
            c = np.log(w[:, 0] / w[:, 1]) + 0.5 * np.log(v[:, 1] / v[:, 0])
        m0, m1 = m[:, 0, None].astype(dt), m[:, 1, None].astype(dt)
        h0, h1, c = h[:, 0, None], h[:, 1, None], c[:, None].astype(dt)
        clip = _EXP_CLIP[dt]
        acc0 = np.zeros((Bw, 3, 2))
        acc1 = np.zeros((Bw, 3, 1))
        for j in range(0, n_max, step):
            k = min(step, n_max - j)
            P, G = self.P[:Bw, :, :, :k], self.G[:Bw, :, :k]
            a, t = self.a[:Bw, :k], self.t[:Bw, :k]
            blk = u[:, j:j + k]
            d0, d1, q0, q1 = P[:, 0, 1], P[:, 1, 1], P[:, 0, 2], P[:, 1, 2]
            np.subtract(blk, m0, out=d0)
            np.subtract(blk, m1, out=d1)
            if wv is not None:                     # padding: weight 0, d = 0
                wb = wv[:, j:j + k]
                P[:, 0, 0] = wb
                P[:, 1, 0] = wb
                d0 *= wb
                d1 *= wb
            np.multiply(d0, d0, out=q0)
            np.multiply(d1, d1, out=q1)
            np.multiply(q1, h1, out=a)
            np.multiply(q0, h0, out=t)
            a -= t
            a += c
            np.minimum(a, clip, out=a)
            g0, ent, g1 = G[:, 0], G[:, 1], G[:, 2]
            np.exp(a, out=g0)
            np.add(g0, 1, out=g1)
            np.reciprocal(g1, out=g1)              # gamma_1 = 1 / (1 + e^a)
            g0 *= g1                               # gamma_0 = e^a / (1 + e^a)
            # sum_k gamma_k log gamma_k = gamma_0 a + log gamma_1 (log gamma_0 = a + log gamma_1):
            # bounded per point, so the lower bound has no cancellation between large terms
            np.multiply(g0, a, out=ent)
            np.log(g1, out=t)
            ent += t
            acc0 += np.matmul(P[:, 0], G[:, 0:2].transpose(0, 2, 1))
            acc1 += np.matmul(P[:, 1], G[:, 2:3].transpose(0, 2, 1))
        if wv is not None and n_max > 0:
            self.P[:, :, 0] = 1
        sums = np.stack([acc0[:, :, 0], acc1[:, :, 0]], axis=1)   # (Bw, 2, 3)
        return sums, acc0[:, 0, 1]


def _em_1d2(x, pm, counts, p0, active, max_iter, tol, reg):
    """EM for D = 1, K = 2 on ``x (B, Np)`` in its own precision; points are handled relative
    to each mixture's data mean ``c`` (u = x - c), sums relative to each component's mean.

    Finished mixtures are dropped from the working set (and the padding trimmed to the
    longest remaining one) whenever a quarter of it has converged.
    """
    dt = x.dtype
    B, n_max = x.shape
    n = np.maximum(counts, 1).astype(np.float64)
    center = x.sum(axis=1, dtype=np.float64) / n
    U = np.subtract(x, center[:, None].astype(dt), dtype=dt)
    W = None if pm is None else pm.astype(dt)
    if W is not None:
        U *= W
    spread = (U.astype(np.float64) ** 2).sum(axis=1) / n
    floor = 1e-12 * spread + np.finfo(np.float64).tiny   # only matters when reg_covar == 0
    w = p0[0].copy()
    m = p0[1][..., 0] - center[:, None]
    v = np.maximum(p0[2][..., 0, 0], floor[:, None])
    prog = _Progress(active)
    Uw, Ww = U[prog.rows], (None if W is None else W[prog.rows])
    estep = _EStep1D2(dt, max(prog.rows.size, 1), n_max)
    for it in range(1, max_iter + 1):
        if not prog.live.any():
            break
        keep = prog.compact(0.75)
        if keep is not None:
            nm = max(int(counts[prog.rows].max(initial=1)), 1)    # points are packed in front
            Uw = Uw[keep, :nm]
            if Ww is not None:
                Ww = Ww[keep, :nm]
        r = prog.rows
        sums, neg_ent = estep(Uw, Ww, w[r], m[r], v[r])
        S, Sd, Q = sums[..., 0], sums[..., 1], sums[..., 2]      # (Bw, 2): sum g, g d, g d^2
        # M-step, sklearn's: nk = S + 10 eps, mean = sum g x / nk, var = sum g (x - mean)^2 / nk
        nk = S + _NK_EPS
        m_old = m[r]
        m_new = m_old * (S / nk) + Sd / nk
        s = m_new - m_old
        var = np.maximum((Q - 2.0 * s * Sd + s * s * S) / nk, 0.0)
        # E-step lower bound (mean log p(u) at the OLD parameters), via
        # log p(u) = sum_k gamma_k (log w_k N_k(u) - log gamma_k)
        lb_new = ((S * (np.log(w[r]) - 0.5 * (LOG_2PI + np.log(v[r]))) - 0.5 * Q / v[r]).sum(axis=1)
                  - neg_ent) / n[r]
        var = np.maximum(var + reg, floor[r, None])
        w_new = nk / nk.sum(axis=1, keepdims=True)
        live = prog.live.copy()
        upd = prog.update(it, lb_new, tol)
        w[upd], m[upd], v[upd] = w_new[live], m_new[live], var[live]
    mu = (m + center[:, None])[..., None]
    return w, mu, v[..., None, None], prog.converged, prog.n_iter, prog.lower_bound
