"""The fit term of the confidence for the ``delay`` teacher (issue 20's generalised eq. 5): the
Jensen–Shannon divergence (base 2, in [0, 1]) between the fitted K-source delay model and the
1-source delay model fitted to the same bins, by Monte Carlo. Pure and batched.

A model (:class:`DelayModel`, the parameters of a
:class:`~bootsep.pipeline.teachers.delay.DelayResult`) is a joint density over a bin's
frequency and its phase differences: the frequency index is drawn from the mixture's fit-bin
frequency distribution ``freq_weights (B, F)`` (shared by both models, normalised per
mixture; :func:`fit_frequency_weights` gives the magnitude weights the fit used), the phase
differences ``theta (P,)`` in ``[-pi, pi)`` given the frequency ``f`` from the model of
:mod:`bootsep.pipeline.teachers.delay`::

    p(theta | f) = sum_k pi_k prod_c VM(theta_c; -2 pi f tau_kc, kappa_kc) + pi_out (2 pi)^-P

Since the frequency distribution is shared, the JSD of the joints is the ``freq_weights``
mean over frequencies of the JSD of the conditionals (the brute-force oracle of the tests).

Randomness: every mixture draws from its own Generator (``seeds[b]``), in a fixed order
(P_1's frequencies, components, von Mises offsets, outlier phases, then P_K's), so a
mixture's value depends only on its own parameters and seed, never on its batch. The draws
are a loop over the mixtures (numpy's von Mises sampler is a rejection sampler, so there are
no batch-shared base variates as in :func:`bootsep.pipeline.confidence.c_jsd`); the
densities, which cost most, are evaluated batched over blocks of mixtures. Components are
put in a canonical order first (descending prior, then delays, then concentrations), so a
permutation of the K sources gives exactly the same value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import i0e

from bootsep.errors import BootsepError

__all__ = ["DelayModel", "delay_jsd", "fit_frequency_weights"]

_TWO_PI = 2.0 * np.pi
_LN2 = float(np.log(2.0))
_BLOCK = 1 << 18                # draws x pairs per block of mixtures in the density evaluation


@dataclass(frozen=True)
class DelayModel:
    """Parameters of a batch of ``B`` delay models with ``K`` sources and ``P`` pairs: source
    priors ``(B, K)``, outlier prior ``(B,)`` (together summing to 1), delays ``(B, K, P)``
    seconds, von Mises concentrations ``kappa (B, K, P)``."""

    priors: np.ndarray
    outlier_prior: np.ndarray
    delays: np.ndarray
    kappa: np.ndarray

    @classmethod
    def from_result(cls, res) -> DelayModel:
        """The fitted parameters of a :class:`~bootsep.pipeline.teachers.delay.DelayResult`."""
        return cls(res.priors, res.outlier_prior, res.delays, res.kappa)


def fit_frequency_weights(x0: np.ndarray, fit_mask: np.ndarray,
                          weight_power: float = 1.0) -> np.ndarray:
    """``(B, F)`` summed fit weights ``|X_0|^weight_power`` of the fit bins at each frequency
    (the weights :func:`~bootsep.pipeline.teachers.delay.delay_masks` fits with) from the
    reference channel ``x0 (B, T, F)`` and ``fit_mask (B, T, F)``; non-finite bins count 0."""
    a = np.abs(np.asarray(x0)).astype(np.float64)
    a = np.where(np.isfinite(a), a, 0.0) ** float(weight_power)
    return np.where(np.asarray(fit_mask, bool), a, 0.0).sum(axis=1)


def delay_jsd(model_k: DelayModel, model_1: DelayModel, freq_weights: np.ndarray,
              freqs: np.ndarray, n_samples: int, seeds: Sequence,
              degenerate: np.ndarray | None = None) -> np.ndarray:
    """Generalised eq. 5: ``JSD(P_1 || P_K)`` (log base 2) of two batches of delay models.

    ``JSD = 1/2 E_P1[log2 (2 p1 / (p1 + pK))] + 1/2 E_PK[log2 (2 pK / (p1 + pK))]`` by Monte
    Carlo with ``n_samples`` draws from each model, clipped to [0, 1]; returns ``(B,)``
    float64. ``model_k``, ``model_1``: :class:`DelayModel` batches (any K each, normally K and
    1) with the same ``B`` and ``P``; ``freq_weights (B, F)`` non-negative frequency weights,
    ``freqs (F,)`` Hz; ``seeds``: one seed per mixture (int or sequence of ints, as
    :func:`bootsep.pipeline.jobs.mixture_seed`). Mixtures flagged in ``degenerate (B,)``, with
    no positive frequency weight, or with unusable parameters (non-finite, a concentration
    <= 0, negative or all-zero priors) get exactly 0. The Monte Carlo standard error is
    ``s / sqrt(n_samples)``, ``s`` <= about 0.5 the spread of the per-draw terms.
    """
    mk, m1 = _as_arrays(model_k, "model_k"), _as_arrays(model_1, "model_1")
    B, P = mk[2].shape[0], mk[2].shape[2]
    if m1[2].shape[0] != B or m1[2].shape[2] != P:
        raise BootsepError(f"delay_jsd: model_1 delays {m1[2].shape} do not match model_k's "
                           f"(B, K, P) = {mk[2].shape}")
    freqs = np.asarray(freqs, np.float64)
    w = np.asarray(freq_weights, np.float64)
    if freqs.ndim != 1 or w.shape != (B, freqs.size) or not np.all(np.isfinite(freqs)):
        raise BootsepError(f"delay_jsd: needs freq_weights (B, F) = ({B}, F) and finite freqs "
                           f"(F,), got {w.shape} and {freqs.shape}")
    n = int(n_samples)
    if n < 1:
        raise BootsepError(f"delay_jsd: n_samples must be >= 1, got {n_samples}")
    if len(seeds) != B:
        raise BootsepError(f"delay_jsd: {len(seeds)} seeds for {B} mixtures")
    ok = _usable(mk) & _usable(m1) & np.all(np.isfinite(w) & (w >= 0), axis=1)
    ok &= w.sum(axis=1, where=np.isfinite(w)) > 0
    if degenerate is not None:
        ok &= ~np.asarray(degenerate, bool).reshape(B)
    out = np.zeros(B)
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return out
    mk, m1 = (_canonical(tuple(a[rows] for a in m)) for m in (mk, m1))
    cdf = np.cumsum(w[rows], axis=1)
    cdf /= cdf[:, -1:]
    fidx = np.empty((rows.size, 2 * n), np.int64)
    theta = np.empty((rows.size, 2 * n, P))
    for i, b in enumerate(rows):                 # per-mixture Generators: batch-independent
        rng = np.random.default_rng(seeds[b])
        for half, m in enumerate((m1, mk)):
            sl = slice(half * n, (half + 1) * n)
            fidx[i, sl], theta[i, sl] = _draw(rng, cdf[i], freqs, tuple(a[i] for a in m), n)
    f = freqs[fidx]
    step = max(1, _BLOCK // (2 * n * P))
    jsd = np.empty(rows.size)
    for s in range(0, rows.size, step):
        sl = slice(s, s + step)
        l1 = _log_density(tuple(a[sl] for a in m1), f[sl], theta[sl])       # (b, 2n)
        lk = _log_density(tuple(a[sl] for a in mk), f[sl], theta[sl])
        with np.errstate(invalid="ignore"):
            tp = np.logaddexp(0.0, lk[:, :n] - l1[:, :n]).mean(axis=-1)     # on P_1's draws
            tq = np.logaddexp(0.0, l1[:, n:] - lk[:, n:]).mean(axis=-1)     # on P_K's draws
        jsd[sl] = 1.0 - 0.5 * (tp + tq) / _LN2
    out[rows] = np.clip(np.nan_to_num(jsd, nan=0.0), 0.0, 1.0)
    return out


def _as_arrays(m: DelayModel, name: str):
    """``(weights (B, K + 1) with the outlier last, delays (B, K, P), kappa (B, K, P))``."""
    pri = np.asarray(m.priors, np.float64)
    out = np.asarray(m.outlier_prior, np.float64)
    tau = np.asarray(m.delays, np.float64)
    kap = np.asarray(m.kappa, np.float64)
    if pri.ndim != 2 or out.shape != pri.shape[:1] or tau.ndim != 3 \
            or tau.shape[:2] != pri.shape or kap.shape != tau.shape:
        raise BootsepError(f"delay_jsd: {name} needs priors (B, K), outlier_prior (B,), delays "
                           f"and kappa (B, K, P), got {pri.shape}, {out.shape}, {tau.shape}, "
                           f"{kap.shape}")
    return np.concatenate([pri, out[:, None]], axis=1), tau, kap


def _usable(m) -> np.ndarray:
    wts, tau, kap = m
    B = wts.shape[0]
    ok = np.isfinite(wts).all(axis=1) & (wts >= 0).all(axis=1) & (wts.sum(axis=1) > 0)
    ok &= np.isfinite(tau.reshape(B, -1)).all(axis=1)
    return ok & (np.isfinite(kap) & (kap > 0)).reshape(B, -1).all(axis=1)


def _canonical(m):
    """Weights normalised to sum 1, sources in a canonical order (descending prior, then the
    delays, then the concentrations) so that the draws do not depend on the sources' order."""
    wts, tau, kap = m
    wts = wts / wts.sum(axis=1, keepdims=True)
    K, P = tau.shape[1:]
    keys = [kap[..., c] for c in reversed(range(P))] + [tau[..., c] for c in reversed(range(P))]
    order = np.lexsort(keys + [-wts[:, :K]], axis=-1)                         # (B, K)
    src = np.take_along_axis(wts[:, :K], order, axis=1)
    return (np.concatenate([src, wts[:, K:]], axis=1),
            np.take_along_axis(tau, order[..., None], axis=1),
            np.take_along_axis(kap, order[..., None], axis=1))


def _draw(rng: np.random.Generator, cdf: np.ndarray, freqs: np.ndarray, m, n: int):
    """``n`` draws ``(frequency index (n,), theta (n, P))`` of one model ``m`` (its weights
    ``(K + 1,)``, delays and kappa ``(K, P)``) at frequencies drawn from ``cdf (F,)``."""
    wts, tau, kap = m
    K, P = tau.shape
    fi = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), cdf.size - 1)
    wcum = np.cumsum(wts)
    comp = np.minimum(np.searchsorted(wcum / wcum[-1], rng.random(n), side="right"), K)
    src = np.minimum(comp, K - 1)
    off = rng.vonmises(0.0, kap[src])                                         # (n, P)
    theta = -_TWO_PI * freqs[fi, None] * tau[src] + off
    outl = comp == K
    theta[outl] = rng.uniform(-np.pi, np.pi, (int(outl.sum()), P))
    return fi, np.mod(theta + np.pi, _TWO_PI) - np.pi


def _log_density(m, f: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``log p(theta | f)`` ``(b, N)`` of models ``m`` (batch ``b``) at frequencies ``f (b, N)``
    Hz and phase differences ``theta (b, N, P)``; ``log 2 pi I0(kappa)`` via ``i0e``."""
    wts, tau, kap = m
    K, P = tau.shape[1:]
    with np.errstate(divide="ignore"):
        logw = np.log(wts)
    const = logw[:, :K] - np.log(_TWO_PI * i0e(kap)).sum(axis=-1)            # (b, K)
    out = np.broadcast_to(logw[:, K, None] - P * np.log(_TWO_PI), f.shape)
    w_f = -_TWO_PI * f[..., None]                                             # (b, N, 1)
    for k in range(K):
        e = np.cos(theta - w_f * tau[:, None, k])                            # (b, N, P)
        e -= 1.0
        e *= kap[:, None, k]
        out = np.logaddexp(out, e.sum(axis=-1) + const[:, k, None])
    return out
