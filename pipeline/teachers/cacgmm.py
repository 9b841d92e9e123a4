"""The ``cacgmm`` spatial teacher: a complex angular central Gaussian mixture per frequency over
all channels (Ito, Araki & Nakatani 2016), pure and batched.

Model. For a mixture STFT ``X (C, T, F)`` (reference channel 0) the observation of bin
``(t, f)`` is the unit-norm vector over channels ``z = x / |x|`` (its global phase is
irrelevant: the density is invariant to ``z -> e^{j phi} z``). Per frequency, K components,
each a complex angular central Gaussian (cACG) with a Hermitian positive definite ``B_kf``::

    p(z | k, f) = (C - 1)! / (2 pi^C det B_kf) (z^H B_kf^-1 z)^-C
    p(z | f) = sum_k pi_kf p(z | k, f)

The density is scale-invariant in ``B``; every ``B_kf`` is kept at trace C. Mixture weights
``pi_kf`` are per (mixture, frequency), as in pb_bss (fgnt/pb_bss ``CACGMMTrainer``, whose
default ``weight_constant_axis`` averages over time only): with per-frequency weights the F
problems of a mixture are independent, so all ``B * F`` of a batch are one flat batch of small
EM problems, and a source that dominates the low band but not the high band (speech) keeps
its share per band.

EM (weighted; bins weighted by ``|X_0|^weight_power`` over the fit bins, 0 elsewhere):

- E-step: ``gamma_tk`` from the log-densities (softmax over k);
- M-step: ``pi_kf = sum_t w gamma / sum_t w``, and the usual fixed-point update (Tyler 1987)
  ``B_kf = C sum_t w gamma z z^H / (z^H B_kf^-1 z) / sum_t w gamma`` with the quadratic form
  of the previous parameters; then ``B <- C B / tr B`` and ``B <- (B + eps I) / (1 + eps)``
  (so ``eps`` is relative to the mean eigenvalue: B never goes singular).

Init: the first step is an M-step from ``init_posteriors`` (the ``delay`` teacher's: its
sources are the same in every frequency, so there is no frequency permutation problem) with
all quadratic forms 1 (a weighted scatter matrix), as pb_bss does. Components keep the order of
the init's sources. A fixed number of iterations (no per-mixture stopping rule: a mixture's
result then never depends on its batch through an iteration count).

Arithmetic. The quadratic forms and the M-step sums are real matrix products over the
``C^2`` real features of ``z z^H`` (``|z_c|^2``, ``Re`` and ``Im`` of ``conj(z_c) z_d`` for
c < d): ``z^H A z = phi(z) . a(A)``, and ``sum_t g_t z z^H`` is read back from
``sum_t g_t phi(z_t)``. That is 4x fewer flops than complex ``Z A`` products and exploits
the Hermitian symmetry. The features are float32 (the one big array: ``T F C^2`` per mixture,
read twice per iteration); the quadratic forms accumulate in float32 too (relative error
~1e-7 / eps), everything per matrix (inverse, log-determinant, priors, the weighted sums'
assembly) is float64 / complex128.

Fit bins as the ``delay`` teacher: valid frames, ``20 log10 |X_0|`` more than ``threshold_db``
above the mixture's loudest valid bin, all channels non-zero and finite. Every valid bin gets
posteriors from the fitted model (bins with no usable observation: the priors). Degenerate
mixtures (fewer than ``min_fit_bins`` fit bins, a channel without spatial cue against channel
0 by :func:`bootsep.pipeline.channels.check_channel_pair`, init posteriors flagged or exactly
uniform, a component with less than ``min_source_share`` of the weight) get exactly uniform
posteriors, like padding frames.

Fit term of the confidence (eq. 5 generalised): :func:`cacg_jsd`, the Jensen--Shannon
divergence between the fitted K-component model and a 1-component cACG fitted to the same bins
(:func:`fit_model` with ``posteriors=None``, or ``single_model=True``), Monte Carlo over
``(f, component, z)``.

Defaults, measured (SI-SDRi of the soft masks on channel 0, synthetic mixtures like the
embedded corpus: two speech-like sources, free field, 8-mic circular array of 5 cm radius,
azimuths >= 10 deg apart, 1-2 m, 0-5 dB, 3.2 s, init from ``delay_masks``; 32 mixtures,
ideal binary mask 14.8 dB; stereo pair / 4 mics / 8 mics):

- ``eps``: the best grows with C (:func:`default_eps`): pair 1e-4 12.3 dB, 1e-3 11.8, 1e-1
  6.5; 8 mics 1e-3 11.8, 3e-2 13.6, 1e-1 13.7 (4 mics: 1e-2 best);
- ``iterations`` 3: 2 / 5 / 10 iterations gave 13.1 / 13.0 / 12.9 (pair), 13.7 / 13.5 / 13.4
  (4), 14.3 / 14.2 / 14.1 (8); with reverberation (pyroomacoustics shoebox, RT60 0.15 s, 6
  mixtures, 4 / 8 mics) 2: 11.0 / 12.3, 5: 10.9 / 11.7, 20: 9.4 / 10.7 (delay: 9.2 / 12.7);
  at RT60 0.3 s all are poor (delay 0.7 / 2.8, cacgmm 1.4 / 3.4) and more iterations help
  a little. EM from the delay posteriors drifts away from them: on anechoic data the delay
  model is the exact one and stays better with more microphones (delay 12.8 / 14.2 / 14.6
  against cacgmm 13.1 / 13.6 / 14.3 at 3 iterations);
- ``priors="frequency"``: per-mixture weights gave 10.5 against 13.4 dB (8 free-field
  mixtures, 4 and 8 mics, eps 0.1, 10 iterations);
- ``weight_power`` 1: 0 gave 13.3, 1 13.4, 2 13.0 dB (same mixtures and settings).

Time (T = 400, F = 129, C = 8, K = 2, 3 iterations, batches of 16, one BLAS thread, the
2-core machine shared with other jobs): 30-46 ms per mixture, about a quarter each in building
the features, the quadratic forms and the M-step sums (memory-bound: 13 MB of features per
mixture per pass); ``delay_masks`` with the geometry, its init, takes 60-90 ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.channels import check_channel_pair
from bootsep.pipeline.features import fit_mask as _fit_mask
from bootsep.pipeline.features import log_magnitude_db

__all__ = ["CacgmmModel", "CacgmmResult", "ModelFit", "cacgmm_masks", "fit_model", "default_eps",
           "cacg_log_density", "sample_cacg", "cacg_jsd"]

PRIOR_FLOOR = 1e-6              # no mixture weight reaches 0 (its log would be -inf)
_FEAT = np.float32              # the features phi(z) and the quadratic forms
_TINY = 1e-30
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class CacgmmModel:
    """Parameters of a batch of per-frequency cACG mixtures: ``priors (B, F, K)`` float64
    (summing to 1 over K), ``covariances (B, F, K, C, C)`` complex128 Hermitian PD, trace C."""

    priors: np.ndarray
    covariances: np.ndarray


@dataclass(frozen=True)
class ModelFit:
    """Output of :func:`fit_model`: the ``model``, ``freq_weights (B, F)`` (each frequency's
    share of the mixture's fit weight, summing to 1 over F; 0 for a mixture without fit
    bins), ``fit_mask (B, T, F)`` bool and ``fit_bins (B,)`` int64."""

    model: CacgmmModel
    freq_weights: np.ndarray
    fit_mask: np.ndarray
    fit_bins: np.ndarray


@dataclass(frozen=True)
class CacgmmResult:
    """Output of :func:`cacgmm_masks` for ``B`` mixtures, ``K`` components, ``C`` channels.

    posteriors: ``(B, T, F, K)`` float32, exactly ``1/K`` on padding frames and for degenerate
    mixtures; labels: ``(B, T, F)`` uint8 argmax (0 there); model: the fitted
    :class:`CacgmmModel` (components in the order of ``init_posteriors``); single_model: the
    1-component model of the same bins when asked for (else None); freq_weights:
    ``(B, F)`` as :class:`ModelFit`; log_likelihood: ``(B,)`` weighted mean log-density of the
    fit bins at the returned parameters; n_iter: ``(B,)`` EM iterations; degenerate: ``(B,)``
    bool (module docstring); fit_mask ``(B, T, F)`` bool; fit_bins ``(B,)`` int64.
    """

    posteriors: np.ndarray
    labels: np.ndarray
    model: CacgmmModel
    single_model: CacgmmModel | None
    freq_weights: np.ndarray
    log_likelihood: np.ndarray
    n_iter: np.ndarray
    degenerate: np.ndarray
    fit_mask: np.ndarray
    fit_bins: np.ndarray


def cacgmm_masks(X: np.ndarray, valid: np.ndarray | None = None, *,
                 init_posteriors: np.ndarray, init_degenerate: np.ndarray | None = None,
                 iterations: int = 3, threshold_db: float = -40.0,
                 weight_power: float = 1.0, eps: float | None = None, min_fit_bins: int = 2,
                 min_source_share: float = 0.02, priors: str = "frequency",
                 single_model: bool = False, prior: np.ndarray | None = None,
                 prior_weight: float = 1.0) -> CacgmmResult:
    """Fit the per-frequency cACGMM (module docstring) to a padded batch.

    ``X``: complex ``(B, C, T, F)`` STFTs, C >= 2, channel 0 the reference; ``valid``:
    ``(B, T)`` bool real frames (None: all); ``init_posteriors``: ``(B, T, F, K)``, K >= 2,
    e.g. :func:`bootsep.pipeline.teachers.delay.delay_masks`' posteriors; ``init_degenerate``:
    ``(B,)`` bool, mixtures the init teacher flagged (None: none). ``iterations`` EM iterations
    after the initial M-step; ``eps``: relative regularisation of every ``B_kf`` (None:
    :func:`default_eps` of C). ``priors``: ``frequency`` (default) or ``mixture`` (one set of
    mixture weights over all frequencies). ``single_model``: also fit the 1-component model
    of the same bins (:func:`fit_model` with ``posteriors=None``, sharing the features) for
    :func:`cacg_jsd`.

    ``prior``: optional ``(B, T, F, K)`` per-bin source probabilities (a student's masks, rows
    summing to 1, no zeros: floor them) combined with the spatial model in every E-step as a
    product of experts, ``gamma_k ~ pi_kf p(z | k, f) prior_k^prior_weight`` (as
    :func:`bootsep.pipeline.teachers.delay.delay_masks` combines it; a uniform prior or
    ``prior_weight = 0`` changes nothing). The returned posteriors and log-likelihood include
    it. The init is ``init_posteriors`` still (a self-training round passes the prior there
    too).
    """
    X, valid, B, C, T, F = _check_input(X, valid, "cacgmm_masks")
    init = np.asarray(init_posteriors)
    if init.ndim != 4 or init.shape[:3] != (B, T, F) or init.shape[3] < 2:
        raise BootsepError(f"cacgmm_masks: init_posteriors must be (B, T, F, K) = "
                           f"{(B, T, F)} + (K >= 2,), got {init.shape}")
    K = init.shape[3]
    eps = default_eps(C) if eps is None else eps
    if iterations < 0 or not eps > 0:
        raise BootsepError(f"cacgmm_masks: unusable iterations={iterations} or eps={eps}")
    obs = _Observations(X, valid, threshold_db, weight_power)
    g0 = np.where(np.isfinite(init), init, 0.0).astype(np.float64)
    g0 = np.clip(g0, 0.0, None).transpose(0, 2, 3, 1).reshape(B * F, K, T)

    if priors not in ("frequency", "mixture"):
        raise BootsepError(f"cacgmm_masks: priors must be 'frequency' or 'mixture', got {priors!r}")
    em = _Em(C, eps, B if priors == "mixture" else None)
    lq = None if prior is None else _log_prior(prior, prior_weight, (B, T, F, K))
    logpri, A, logdet = em.mstep(obs.phi, obs.w, g0.astype(_FEAT), None)
    for _ in range(int(iterations)):
        gamma, Q, _ = em.estep(obs.phi, obs.w, logpri, A, logdet, lq)
        logpri, A, logdet = em.mstep(obs.phi, obs.w, gamma, Q)
    gamma, _, ll = em.estep(obs.phi, obs.w, logpri, A, logdet, lq)
    cov = em.covariances()

    # degenerate: too few fit bins, a channel without spatial cue, a flagged or flat init, or
    # a component with a negligible share of the weight
    x0 = X[:, 0]
    no_cue = np.stack([check_channel_pair(x0, X[:, c], valid).flagged for c in range(1, C)],
                      axis=1).any(axis=1)
    fitb = obs.fit.transpose(0, 2, 1)[:, :, None, :]                      # (B, F, 1, T)
    flat_init = np.all(np.where(fitb, np.abs(g0.reshape(B, F, K, T) - 1.0 / K), 0.0) < 1e-6,
                       axis=(1, 2, 3))
    wk = (gamma * obs.w[:, None, :]).reshape(B, F, K, T).sum(axis=(1, 3), dtype=np.float64)
    share = wk / np.maximum(wk.sum(axis=1, keepdims=True), _TINY)
    degenerate = (obs.counts < max(int(min_fit_bins), 1)) | no_cue | flat_init \
        | (share.min(axis=1) < float(min_source_share))
    if init_degenerate is not None:
        degenerate |= np.asarray(init_degenerate, dtype=bool).reshape(B)
    single = None
    if single_model:
        single = _fit_held(obs, np.ones((B * F, 1, T), _FEAT), C, eps, iterations)

    posts = np.ascontiguousarray(gamma.reshape(B, F, K, T).transpose(0, 3, 1, 2),
                                 dtype=np.float32)
    # valid bins without a usable observation (a zero vector): the priors of their frequency
    pri = np.exp(logpri).reshape(B, F, K)
    posts = np.where(obs.usable[..., None], posts, pri[:, None].astype(np.float32))
    labels = np.argmax(posts, axis=-1).astype(np.uint8)
    flat = np.broadcast_to(~valid[:, :, None] | degenerate[:, None, None], (B, T, F))
    posts[flat] = 1.0 / K
    labels[flat] = 0
    return CacgmmResult(
        posteriors=posts, labels=labels,
        model=CacgmmModel(priors=pri, covariances=cov.reshape(B, F, K, C, C)),
        single_model=single, freq_weights=obs.freq_weights(),
        log_likelihood=_wmean(ll, obs.w, B),
        n_iter=np.full(B, int(iterations), np.int64), degenerate=degenerate,
        fit_mask=obs.fit, fit_bins=obs.counts)


def default_eps(num_channels: int) -> float:
    """The default regularisation ``eps`` for C channels: ``min(0.05, 10^(C - 6))`` (1e-4 for
    2 channels, 1e-2 for 4, 0.05 from 5 on). Measured (module docstring): the best ``eps``
    grows with C, as the C^2 - 1 free parameters of every ``B_kf`` do against a few hundred
    frames: on the pair a floor above 1e-3 blurs the one small eigenvalue that carries the
    direction (1e-1: 6.5 dB against 12.3 for 1e-4), on 8 microphones no floor overfits
    (1e-3: 11.8 dB against 13.7 for 0.1)."""
    return min(0.05, 10.0 ** (int(num_channels) - 6))


def fit_model(X: np.ndarray, posteriors: np.ndarray | None = None,
              valid: np.ndarray | None = None, *, iterations: int = 3,
              threshold_db: float = -40.0, weight_power: float = 1.0,
              eps: float | None = None) -> ModelFit:
    """The cACGMM parameters for FIXED posteriors (no E-step): the priors are the weighted
    posterior shares per frequency, each ``B_kf`` the weighted fixed point of the M-step's
    update with ``gamma`` held, i.e. the cACG maximum-likelihood estimate of the bins weighted
    ``w gamma`` (``iterations`` updates after the first, a weighted scatter matrix).

    ``posteriors (B, T, F, K)`` of any teacher (e.g. IVA's masks), or None for the
    1-component model (``gamma = 1``: the model the confidence's fit term compares against).
    Other arguments as :func:`cacgmm_masks` (the same fit bins and weights).
    """
    X, valid, B, C, T, F = _check_input(X, valid, "fit_model")
    if posteriors is None:
        g = np.ones((B * F, 1, T), _FEAT)
    else:
        p = np.asarray(posteriors)
        if p.ndim != 4 or p.shape[:3] != (B, T, F):
            raise BootsepError(f"fit_model: posteriors must be (B, T, F, K) = {(B, T, F)} + "
                               f"(K,), got {p.shape}")
        g = np.clip(np.where(np.isfinite(p), p, 0.0), 0.0, None).astype(_FEAT)
        g = g.transpose(0, 2, 3, 1).reshape(B * F, p.shape[3], T)
    eps = default_eps(C) if eps is None else eps
    if iterations < 0 or not eps > 0:
        raise BootsepError(f"fit_model: unusable iterations={iterations} or eps={eps}")
    obs = _Observations(X, valid, threshold_db, weight_power)
    return ModelFit(model=_fit_held(obs, g, C, eps, iterations),
                    freq_weights=obs.freq_weights(), fit_mask=obs.fit, fit_bins=obs.counts)


def _fit_held(obs: _Observations, g: np.ndarray, C: int, eps: float,
              iterations: int) -> CacgmmModel:
    """:func:`fit_model`'s fit on built observations, responsibilities ``g (B F, K, T)``."""
    em = _Em(C, eps)
    logpri, A, logdet = em.mstep(obs.phi, obs.w, g, None)
    for _ in range(int(iterations)):
        Q = em.quadratic_forms(obs.phi, A)
        logpri, A, logdet = em.mstep(obs.phi, obs.w, g, Q)
    K = g.shape[1]
    return CacgmmModel(priors=np.exp(logpri).reshape(obs.B, obs.F, K),
                       covariances=em.covariances().reshape(obs.B, obs.F, K, C, C))


def cacg_log_density(z: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """``log p(z | B)`` of unit-norm ``z (..., C)`` under cACGs ``covariances (..., C, C)``
    (broadcast against each other), float64: ``log (C-1)! - log 2 - C log pi - log det B -
    C log(z^H B^-1 z)``."""
    z = np.asarray(z, np.complex128)
    cov = np.asarray(covariances, np.complex128)
    C = z.shape[-1]
    A = np.linalg.inv(cov)
    logdet = np.linalg.slogdet(cov)[1]
    q = np.einsum("...c,...cd,...d->...", z.conj(), A, z).real
    return (math.lgamma(C) - _LN2 - C * math.log(math.pi)) - logdet \
        - C * np.log(np.maximum(q, _TINY))


def sample_cacg(rng: np.random.Generator, covariances: np.ndarray) -> np.ndarray:
    """One unit-norm draw ``(..., C)`` complex128 from each cACG ``covariances (..., C, C)``:
    ``y ~ CN(0, B)``, ``z = y / |y|`` (the cACG is the law of the direction of a circular
    complex Gaussian; its density is invariant to the scale of B)."""
    cov = np.asarray(covariances, np.complex128)
    g = (rng.standard_normal(cov.shape[:-1]) + 1j * rng.standard_normal(cov.shape[:-1]))
    return _directions(np.linalg.cholesky(cov), g / math.sqrt(2.0))


def cacg_jsd(model_k: CacgmmModel, model_1: CacgmmModel, freq_weights: np.ndarray,
             n_samples: int, seed=0, *, seeds: Sequence | None = None,
             degenerate: np.ndarray | None = None) -> np.ndarray:
    """Jensen--Shannon divergence (base 2, in [0, 1]; eq. 5 generalised) between the fitted
    K-component model ``Q = model_k`` and the 1-component model ``P = model_1`` of the same
    bins, as joint laws of ``(f, z)`` with ``f ~ freq_weights`` (the frequencies' shares of the
    fit weight, :attr:`ModelFit.freq_weights`): ``JSD = sum_f w_f JSD(P_f, Q_f)``.

    Monte Carlo, ``n_samples`` draws of each half: ``f ~ w``, then ``z ~ P_f``; ``f ~ w``,
    ``k ~ pi_f``, ``z ~ cACG(B_kf)``; both densities at all draws;
    ``JSD = 1/2 E_P[log2 (2p / (p + q))] + 1/2 E_Q[log2 (2q / (p + q))]``, clipped to [0, 1].
    Randomness as :func:`bootsep.pipeline.confidence.c_jsd`: the base variates come from
    ``np.random.default_rng(seed)`` shared by all mixtures, or with ``seeds`` (length B) from
    one generator per mixture (a mixture's value then depends only on its own parameters and
    seed). Mixtures flagged ``degenerate``, with non-finite parameters or no weight get 0.
    """
    pk, ck = np.asarray(model_k.priors, np.float64), np.asarray(model_k.covariances)
    c1 = np.asarray(model_1.covariances)
    w = np.asarray(freq_weights, np.float64)
    if pk.ndim != 3 or ck.shape[:3] != pk.shape or c1.shape[:2] != pk.shape[:2] \
            or c1.shape[2] != 1 or w.shape != pk.shape[:2]:
        raise BootsepError(f"cacg_jsd: needs models (B, F, K) / (B, F, 1) and freq_weights "
                           f"(B, F), got {pk.shape}, {c1.shape[:3]} and {w.shape}")
    n = int(n_samples)
    if n < 1:
        raise BootsepError(f"cacg_jsd: n_samples must be >= 1, got {n_samples}")
    B, F, K = pk.shape
    C = ck.shape[-1]
    ok = np.isfinite(ck.reshape(B, -1)).all(1) & np.isfinite(c1.reshape(B, -1)).all(1) \
        & np.isfinite(pk.reshape(B, -1)).all(1) & np.isfinite(w).all(1) & (w.sum(1) > 0)
    if degenerate is not None:
        ok &= ~np.asarray(degenerate, dtype=bool).reshape(B)
    out = np.zeros(B)
    rows = np.flatnonzero(ok)
    if rows.size == 0:
        return out
    if seeds is not None:
        if len(seeds) != B:
            raise BootsepError(f"cacg_jsd: {len(seeds)} seeds for {B} mixtures")
        var = [_jsd_variates(np.random.default_rng(seeds[b]), n, C) for b in rows]
        u, g = (np.stack([v[i] for v in var]) for i in range(2))
    else:
        u, g = _jsd_variates(np.random.default_rng(seed), n, C)
        u, g = (np.broadcast_to(a, (rows.size,) + a.shape) for a in (u, g))
    pk, ck, c1, w = pk[rows], ck[rows], c1[rows, :, 0], w[rows]
    b = np.arange(rows.size)[:, None]
    cw = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    fp = np.minimum((u[..., 0, None] >= cw[:, None, :]).sum(-1), F - 1)     # (b, n)
    fq = np.minimum((u[..., 1, None] >= cw[:, None, :]).sum(-1), F - 1)
    cp = np.cumsum(pk[b, fq], axis=-1)                                      # (b, n, K)
    kq = np.minimum((u[..., 2, None] >= cp[..., :-1]).sum(-1), K - 1)
    Lp, Lq = np.linalg.cholesky(c1), np.linalg.cholesky(ck)
    zp = _directions(Lp[b, fp], g[..., 0, :])                               # (b, n, C)
    zq = _directions(Lq[b, fq, kq], g[..., 1, :])
    z = np.concatenate([zp, zq], axis=1)                                    # (b, 2n, C)
    f = np.concatenate([fp, fq], axis=1)
    const = math.lgamma(C) - _LN2 - C * math.log(math.pi)      # densities at the draws, with
    A1, d1 = np.linalg.inv(c1), np.linalg.slogdet(c1)[1]        # the inverses and log-dets
    Ak, dk = np.linalg.inv(ck), np.linalg.slogdet(ck)[1]        # computed once per matrix
    q1 = np.einsum("bnc,bncd,bnd->bn", z.conj(), A1[b, f], z).real
    lp = const - d1[b, f] - C * np.log(np.maximum(q1, _TINY))                 # (b, 2n)
    qk = np.einsum("bnc,bnkcd,bnd->bnk", z.conj(), Ak[b, f], z).real
    lk = const - dk[b, f] - C * np.log(np.maximum(qk, _TINY)) \
        + np.log(np.maximum(pk[b, f], _TINY))                                # (b, 2n, K)
    m = lk.max(axis=-1)
    lq = m + np.log(np.exp(lk - m[..., None]).sum(axis=-1))
    tp = np.logaddexp(0.0, lq[:, :n] - lp[:, :n]).mean(axis=-1)
    tq = np.logaddexp(0.0, lp[:, n:] - lq[:, n:]).mean(axis=-1)
    jsd = 1.0 - 0.5 * (tp + tq) / _LN2
    out[rows] = np.clip(np.nan_to_num(jsd, nan=0.0), 0.0, 1.0)
    return out


# --------------------------------------------------------------------------- internals

def _log_prior(prior, weight: float, shape: tuple) -> np.ndarray | None:
    """``weight * log(prior)`` of a per-bin prior ``(B, T, F, K)`` in the E-step's layout
    ``(B F, K, T)`` float32; None for ``weight == 0``."""
    p = np.asarray(prior, dtype=np.float64)
    if p.shape != shape:
        raise BootsepError(f"cacgmm_masks: prior must be (B, T, F, K) = {shape}, got {p.shape}")
    if not np.isfinite(weight) or weight < 0:
        raise BootsepError(f"cacgmm_masks: prior_weight must be >= 0, got {weight}")
    if weight == 0:
        return None
    if not (np.all(np.isfinite(p)) and np.all(p > 0)):
        raise BootsepError("cacgmm_masks: the prior must be finite and positive (floor it)")
    B, T, F, K = shape
    lq = float(weight) * np.log(p / p.sum(axis=-1, keepdims=True))
    return np.ascontiguousarray(lq.transpose(0, 2, 3, 1).reshape(B * F, K, T), dtype=_FEAT)


def _check_input(X, valid, name):
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[1] < 2 or not np.iscomplexobj(X):
        raise BootsepError(f"{name} needs complex X of shape (B, C, T, F) with C >= 2, got "
                           f"{X.shape} {X.dtype}")
    B, C, T, F = X.shape
    if valid is None:
        valid = np.ones((B, T), bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (B, T):
        raise BootsepError(f"{name}: valid frames {valid.shape} != (B, T) = {(B, T)}")
    return X, valid, B, C, T, F


def _directions(L: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``y = L g`` normalised to unit norm: ``L (..., C, C)``, ``g (..., C)``."""
    y = np.einsum("...cd,...d->...c", L, g)
    return y / np.maximum(np.linalg.norm(y, axis=-1, keepdims=True), _TINY)


def _jsd_variates(rng: np.random.Generator, n: int, C: int):
    """Uniforms ``(n, 3)`` (P's frequency, Q's frequency, Q's component) and standard
    circular complex normals ``(n, 2, C)`` (P's draw, Q's draw)."""
    u = rng.random((n, 3))
    g = (rng.standard_normal((n, 2, C)) + 1j * rng.standard_normal((n, 2, C))) / math.sqrt(2)
    return u, g


def _wmean(ll: np.ndarray, w: np.ndarray, B: int) -> np.ndarray:
    """Weighted mean ``(B,)`` of per-bin values ``(B F, T)`` with the weights ``w``."""
    num = (ll.reshape(B, -1).astype(np.float64) * w.reshape(B, -1)).sum(axis=1)
    return num / np.maximum(w.reshape(B, -1).sum(axis=1, dtype=np.float64), _TINY)


class _Observations:
    """Features ``phi (B F, C^2, T)`` float32 of the unit vectors (feature-major: every
    feature row is contiguous over frames), bin weights ``w (B F, T)`` (``|X_0|^weight_power``
    on fit bins scaled by the mixture's largest, 0 elsewhere), fit mask ``(B, T, F)``, usable
    bins ``(B, T, F)`` and fit bin counts ``(B,)``."""

    def __init__(self, X, valid, threshold_db, weight_power):
        B, C, T, F = X.shape
        x = X.transpose(1, 0, 3, 2)                                          # (C, B, F, T)
        re = np.ascontiguousarray(x.real, dtype=_FEAT)
        im = np.ascontiguousarray(x.imag, dtype=_FEAT)
        mag2 = re * re
        mag2 += im * im
        norm2 = mag2.sum(axis=0)                                             # (B, F, T)
        finite = np.isfinite(norm2)
        usable = finite & (norm2 > 0) & valid[:, None, :]
        self.usable = usable.transpose(0, 2, 1)                              # (B, T, F)
        x0 = X[:, 0]
        self.fit = _fit_mask(log_magnitude_db(x0), valid, threshold_db) \
            & (finite & (mag2 > 0).all(axis=0)).transpose(0, 2, 1)
        self.counts = np.count_nonzero(self.fit, axis=(1, 2)).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = np.where(usable, 1.0 / np.sqrt(np.where(usable, norm2, 1.0)), 0.0)
        inv = inv.astype(_FEAT)
        re *= inv                                            # z = x / |x| (0 if unusable)
        im *= inv
        phi = np.empty((B, F, C * C, T), _FEAT)
        tmp = np.empty((B, F, T), _FEAT)
        for c in range(C):                                  # |z_c|^2
            np.multiply(re[c], re[c], out=phi[:, :, c])
            np.multiply(im[c], im[c], out=tmp)
            phi[:, :, c] += tmp
        j = C
        P2 = C * (C - 1) // 2
        for c in range(C - 1):                              # conj(z_c) z_d, c < d
            for d in range(c + 1, C):
                np.multiply(re[c], re[d], out=phi[:, :, j])
                np.multiply(im[c], im[d], out=tmp)
                phi[:, :, j] += tmp
                np.multiply(re[c], im[d], out=phi[:, :, j + P2])
                np.multiply(im[c], re[d], out=tmp)
                phi[:, :, j + P2] -= tmp
                j += 1
        self.phi = phi.reshape(B * F, C * C, T)
        a0 = np.abs(x0).astype(np.float64)
        w = np.where(self.fit, np.where(np.isfinite(a0), a0, 0.0) ** float(weight_power), 0.0)
        wmax = w.max(axis=(1, 2), keepdims=True, initial=0.0)
        w = w / np.where(wmax > 0, wmax, 1.0)
        self.w = np.ascontiguousarray(w.transpose(0, 2, 1).reshape(B * F, T), dtype=_FEAT)
        self.B, self.F = B, F

    def freq_weights(self) -> np.ndarray:
        wf = self.w.reshape(self.B, self.F, -1).sum(axis=-1, dtype=np.float64)
        tot = wf.sum(axis=1, keepdims=True)
        return np.where(tot > 0, wf / np.where(tot > 0, tot, 1.0), 0.0)


class _Em:
    """E- and M-steps on the flat batch of ``N = B F`` problems (features ``phi (N, C^2, T)``,
    weights ``w (N, T)``, responsibilities and quadratic forms ``(N, K, T)``). Parameters: log
    priors ``(N, K)``, precision matrices as feature coefficients ``A (N, K, C^2)`` float32
    (:meth:`_coefficients`) and log-determinants ``(N, K)`` float64; the precisions in
    complex128 are kept for :meth:`covariances`. ``tied``: B, for one set of mixture weights per
    mixture (over its F problems) instead of per problem."""

    def __init__(self, C: int, eps: float, tied: int | None = None):
        self.C, self.eps, self.tied = C, float(eps), tied
        self.iu, self.ju = np.triu_indices(C, 1)
        self.const = math.lgamma(C) - _LN2 - C * math.log(math.pi)
        self._prec = None

    def quadratic_forms(self, phi, A):
        """``z^H B_k^-1 z`` ``(N, K, T)`` float32, floored at a tiny positive value."""
        Q = np.matmul(A, phi)
        np.maximum(Q, np.float32(1e-12), out=Q)
        return Q

    def estep(self, phi, w, logpri, A, logdet, logprior=None):
        """Responsibilities ``(N, K, T)`` float32, the quadratic forms ``(N, K, T)`` and the
        per-bin log-density ``log p(z)`` ``(N, T)``; ``logprior (N, K, T)``: a per-bin
        log-prior added to every component's log-density (a product of experts)."""
        Q = self.quadratic_forms(phi, A)
        L = np.log(Q)
        L *= np.float32(-self.C)
        L += (logpri - logdet + self.const).astype(_FEAT)[:, :, None]
        if logprior is not None:
            L += logprior
        K = L.shape[1]
        m = L[:, 0].copy()
        for k in range(1, K):
            np.maximum(m, L[:, k], out=m)
        L -= m[:, None]
        np.exp(L, out=L)
        tot = L[:, 0].copy()
        for k in range(1, K):
            tot += L[:, k]
        L /= tot[:, None]
        np.log(tot, out=tot)
        tot += m
        return L, Q, tot

    def mstep(self, phi, w, gamma, Q):
        """New log priors, precision coefficients and log-determinants from the
        responsibilities ``gamma (N, K, T)`` and the quadratic forms ``Q`` of the previous
        parameters (None: all 1, the initial weighted scatter matrices)."""
        N, K, T = gamma.shape
        C = self.C
        G = gamma * w[:, None, :]
        mass = G.sum(axis=-1, dtype=np.float64)                              # (N, K)
        if self.tied is not None:                    # one set of weights per mixture
            mass = np.repeat(mass.reshape(self.tied, -1, K).sum(axis=1), N // self.tied, axis=0)
        tot = mass.sum(axis=1, keepdims=True)
        pri = np.where(tot > 0, mass / np.maximum(tot, _TINY), 1.0 / K)
        pri = np.maximum(pri, PRIOR_FLOOR)
        logpri = np.log(pri / pri.sum(axis=1, keepdims=True))
        if Q is not None:
            G /= Q
        S = np.einsum("nkt,ndt->nkd", G, phi).astype(np.float64)           # (N, K, C^2)
        P2 = self.iu.size
        M = np.zeros((N, K, C, C), np.complex128)
        d = np.arange(C)
        M[..., d, d] = S[..., :C]
        off = S[..., C:C + P2] - 1j * S[..., C + P2:]                         # z_c conj(z_d)
        M[..., self.iu, self.ju] = off
        M[..., self.ju, self.iu] = off.conj()
        tr = S[..., :C].sum(axis=-1)                                         # (N, K)
        good = tr > 0
        M = np.where(good[..., None, None], M * (C / np.where(good, tr, 1.0))[..., None, None],
                     np.eye(C))
        M[..., d, d] += self.eps
        M /= 1.0 + self.eps
        prec = np.linalg.inv(M)
        prec = 0.5 * (prec + prec.conj().swapaxes(-1, -2))
        logdet = np.linalg.slogdet(M)[1]
        self._prec = prec
        return logpri, self._coefficients(prec), logdet

    def _coefficients(self, prec):
        """Feature coefficients ``(N, K, C^2)`` float32 of Hermitian ``prec (N, K, C, C)``:
        ``z^H A z = sum_c A_cc |z_c|^2 + sum_{c<d} 2 Re A_cd Re(p) - 2 Im A_cd Im(p)``,
        ``p = conj(z_c) z_d``."""
        C = self.C
        d = np.arange(C)
        off = prec[..., self.iu, self.ju]
        a = np.concatenate([prec[..., d, d].real, 2.0 * off.real, -2.0 * off.imag], axis=-1)
        return np.ascontiguousarray(a, dtype=_FEAT)

    def covariances(self):
        """``B_kf`` ``(N, K, C, C)`` complex128 (trace C) of the last M-step."""
        cov = np.linalg.inv(self._prec)
        return 0.5 * (cov + cov.conj().swapaxes(-1, -2))
