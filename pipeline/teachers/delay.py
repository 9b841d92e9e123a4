"""The ``delay`` spatial teacher: one propagation delay per source and microphone pair (or one
direction when the array geometry is known) shared by all frequencies, pure and batched.

Model (MESSL: Mandel, Weiss & Ellis 2010, with an outlier component and tied delays). For
a mixture STFT ``X (C, T, F)`` with reference channel 0 and pairs ``(c, 0)``, c = 1..P
(P = C - 1), the observation of bin ``n = (t, f)`` is the vector of phase differences
``theta_c = angle(X_c conj(X_0))``. Source k arrives at microphone c ``tau_kc`` seconds later
than at microphone 0, so its phase difference is centred on ``mu_kc(f) = -2 pi f tau_kc``
(wrapped). Given the source, pairs are independent von Mises variables::

    p(theta | k) = prod_c exp(kappa_kc cos(theta_c - mu_kc(f))) / (2 pi I0(kappa_kc))
    p(theta | outlier) = (2 pi)^-P                              (diffuse / unexplained bins)
    p(theta) = sum_k pi_k p(theta | k) + pi_out (2 pi)^-P

Without geometry ``tau_k`` is free on a delay grid in ``[-max_delay_s, max_delay_s]``; with
microphone positions it is the far-field delay of an azimuth ``phi_k`` (horizontal plane,
as :mod:`bootsep.pipeline.corpus.spatialize`): ``tau_kc = -(p_c - p_0) . u(phi_k) / c``.

Fitting: weighted EM over the fit bins (valid frames, ``20 log10 |X_0|`` more than
``threshold_db`` above the mixture's loudest valid bin, all pairs non-zero). Each bin's
weight is ``|X_0|^weight_power``; the default 1 (magnitude, like DUET's ``p = 1/2`` on
``|X_0 X_c|``: Yilmaz & Rickard 2004) counts bins as the magnitude-weighted label accuracy
does. Power weighting lets the few loudest, low-frequency bins, whose phase carries least
delay information, decide the fit; no weighting lets the many quiet, noisy bins decide it.
Measured on the embedded corpus's test split (``bench/teacher_delay.py``, 200 mixtures,
SI-SDRi of the stereo pair / all 8 microphones): power 0: 10.3 / 12.0 dB, 1: 10.7 / 12.0,
2: 10.1 / 11.7.

- E-step: responsibilities of the K sources and the outlier for every bin; the weighted
  mean log-likelihood is the convergence criterion (per mixture, ``tol``).
- M-step: priors by weighted counts; the delay by a 1-D grid search of
  ``sum_f Re[S_kc(f) exp(j 2 pi f tau)]`` with ``S_kc(f) = sum_t w r_k exp(j theta_c)`` (a
  posterior-weighted cross-spectrum, so the search costs O(F G), not O(T F G)) refined by a
  parabola through the best grid point and its neighbours (MESSL also searches a grid);
  with geometry the search is over the azimuth grid of ``sum_c kappa_kc (...)``,
  coordinatewise (ECM). Then ``kappa_kc = A^-1(Rbar)`` with Rbar the weighted mean resultant
  length at the new delay and ``A^-1(R) ~ R (2 - R^2) / (1 - R^2)`` (Banerjee et al. 2005),
  clipped to ``[KAPPA_MIN, kappa_max]``. Anechoic phase differences are very concentrated:
  a cap of 100 is reached by most sources and makes two sources on one pair collapse onto one
  delay (pair 8.4 dB, 16 of 200 mixtures degenerate) where 1000 gives 10.7 dB (4).
- Init: greedy peaks of a delay spectrum of unit phasors over the fit bins (PHAT weighting):
  with geometry the SRP-PHAT over the azimuth grid (all pairs summed), without geometry the
  GCC-PHAT of pair 1 (Knapp & Carter 1976). After each peak the bins it explains are
  down-weighted before the next is sought (a weak source is often no peak of the plain
  spectrum, only of its sidelobes). Without geometry and P > 1, pair 1 is fitted alone
  first, then every pair's delays are fitted once from pair 1's posteriors (this labels
  every pair's delays consistently with pair 1's sources, with no cross-pair matching),
  then all pairs are fitted jointly.
- Prior and init (self-training rounds; the idea of Drude et al., ICASSP 2019, "Unsupervised
  training of neural mask-based beamforming": a neural mask as a per-bin prior of a spatial
  mixture model). A per-bin prior ``q_k(t, f)`` (a student's posteriors) enters every E-step
  and the returned posteriors as a product of experts with exponent ``beta``: the log-joint
  of source k gets ``beta log q_k``, the outlier's ``beta log(1/K)`` (implemented as
  ``beta log(K q_k)`` and 0, the same posteriors), so a uniform prior or ``beta = 0`` changes
  nothing and the M-step fits the delays, kappas and priors under the prior. ``q`` is floored
  at ``MASK_PRIOR_FLOOR`` (1e-6: no log 0; a hard 0 of the student is a factor 1e-6, not a
  veto) and kept in float64 like the model. Given init posteriors, one M-step from them (all
  pairs at once, over the azimuth grid with geometry) replaces the PHAT init, so the
  components start in the init's source order; without them the PHAT peaks are permuted to
  best agree with the prior (kept if no permutation is strictly better). Either way the
  result is sorted by descending prior as always: callers cannot rely on the source order.

Everything is batched over mixtures (no loop over mixtures; loops over EM iterations and
over the K peaks only). A mixture stops updating once converged, and the per-bin arithmetic
is float64: with concentrations near the cap, float32 rounding of the log-likelihoods
depends on the padded length (BLAS blocking) and changed the iteration count of a mixture
with its batch; in float64 a mixture's result does not depend on the other mixtures of its
batch (tests/test_teacher_delay.py). Degenerate mixtures (silence, a dead or identical
channel, one source) get exactly uniform posteriors, like padding frames.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.special import i0e

from bootsep.errors import BootsepError
from bootsep.pipeline.channels import check_channel_pair
from bootsep.pipeline.features import fit_mask as _fit_mask
from bootsep.pipeline.features import log_magnitude_db

__all__ = ["DelayResult", "delay_masks", "bin_frequencies", "far_field_delays"]

KAPPA_MIN = 1e-3                # von Mises concentrations are clipped to [KAPPA_MIN, kappa_max]
PRIOR_FLOOR = 1e-6              # no prior reaches 0 (its log would be -inf)
MASK_PRIOR_FLOOR = 1e-6         # per-bin prior probabilities are floored here before the log
_TWO_PI = 2.0 * np.pi
_DT = np.float64


@dataclass(frozen=True)
class DelayResult:
    """Output of :func:`delay_masks` for a batch of ``B`` mixtures, ``K`` sources, ``P = C - 1``
    pairs ``(c, 0)``.

    posteriors: ``(B, T, F, K)`` float32 source posteriors with the outlier folded out
    (renormalised over the K sources), exactly ``1/K`` on padding frames and for degenerate
    mixtures; labels: ``(B, T, F)`` uint8 argmax (0 on padding and degenerate mixtures);
    outlier_posterior: ``(B, T, F)`` float32 posterior of the outlier component (0 on padding);
    priors: ``(B, K)`` source priors and outlier_prior ``(B,)`` (together summing to 1);
    delays: ``(B, K, P)`` float64 seconds, ``tau_kc`` = arrival at microphone c minus arrival at
    microphone 0; directions: ``(B, K)`` azimuths in degrees [0, 360) when the geometry was
    given, else None; kappa: ``(B, K, P)`` von Mises concentrations; sources are sorted by
    descending prior. log_likelihood: ``(B,)`` weighted mean log-density of the fit bins at
    the returned parameters (with a prior: of the product of experts' normaliser
    ``sum_k pi_k (K q_k)^beta p(theta | k) + pi_out (2 pi)^-P``); n_iter, converged:
    ``(B,)`` EM diagnostics (of the joint fit);
    degenerate: ``(B,)`` bool, no usable fit (fewer than 2 fit bins, a pair without spatial
    cue by :func:`bootsep.pipeline.channels.check_channel_pair`, two sources at the same
    delay/direction, or a source with a share of the
    source weight below ``min_source_share``); fit_mask: ``(B, T, F)`` bool; fit_bins:
    ``(B,)`` int64.
    """

    posteriors: np.ndarray
    labels: np.ndarray
    outlier_posterior: np.ndarray
    priors: np.ndarray
    outlier_prior: np.ndarray
    delays: np.ndarray
    directions: np.ndarray | None
    kappa: np.ndarray
    log_likelihood: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    degenerate: np.ndarray
    fit_mask: np.ndarray
    fit_bins: np.ndarray


def bin_frequencies(sample_rate: float, n_fft: int) -> np.ndarray:
    """Centre frequencies ``(n_fft // 2 + 1,)`` in Hz of a real FFT of size ``n_fft``."""
    return np.arange(n_fft // 2 + 1) * (float(sample_rate) / int(n_fft))


def far_field_delays(mic_pos: np.ndarray, azimuth_deg: np.ndarray,
                     speed_of_sound: float) -> np.ndarray:
    """Far-field delays ``(..., C - 1)`` in seconds of plane waves from ``azimuth_deg (...)``
    (horizontal plane) at microphones 1..C-1 relative to microphone 0:
    ``-(p_c - p_0) . u(azimuth) / c`` (positive when microphone c hears the wave later)."""
    mic_pos = np.asarray(mic_pos, dtype=np.float64)
    a = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    u = np.stack([np.cos(a), np.sin(a), np.zeros_like(a)], axis=-1)         # (..., 3)
    rel = mic_pos[1:] - mic_pos[0]                                           # (P, 3)
    return -np.einsum("...d,pd->...p", u, rel) / float(speed_of_sound)


def delay_masks(X: np.ndarray, valid: np.ndarray | None = None, *,
                freqs: np.ndarray | None = None, sample_rate: float | None = None,
                n_fft: int | None = None, num_components: int = 2,
                mic_pos: np.ndarray | None = None, speed_of_sound: float = 343.0,
                threshold_db: float = -40.0, weight_power: float = 1.0,
                max_delay_s: float = 1e-3, delay_step_s: float | None = None,
                min_separation_s: float | None = None, azimuth_step_deg: float = 1.0,
                min_separation_deg: float = 10.0, outlier_prior: float = 0.1,
                kappa_init: float = 2.0, kappa_max: float = 1000.0, max_iter: int = 50,
                tol: float = 1e-4, min_source_share: float = 0.02,
                prior: np.ndarray | None = None, prior_weight: float = 1.0,
                init_posteriors: np.ndarray | None = None) -> DelayResult:
    """Fit the tied-delay wrapped-phase mixture (module docstring) to a padded batch.

    ``X``: complex ``(B, C, T, F)`` STFTs, C >= 2, channel 0 the reference; ``valid``:
    ``(B, T)`` bool real frames (None: all). Bin frequencies: ``freqs (F,)`` in Hz, or
    ``sample_rate`` and ``n_fft``. ``mic_pos (C, 3)`` metres (optional) switches to the
    direction model over an azimuth grid of ``azimuth_step_deg``; otherwise delays are
    searched on ``[-max_delay_s, max_delay_s]`` in steps of ``delay_step_s`` (default
    ``1 / (16 fs)``, fs = 2 max(freqs)). Init peaks are at least ``min_separation_deg``
    (default 10) or ``min_separation_s`` (default ``1 / (2 fs)``) apart. ``outlier_prior`` and
    ``kappa_init`` start EM, which runs at most ``max_iter`` iterations per stage.
    ``num_components = 1`` fits the 1-source model (the reference of the confidence's fit
    term, :mod:`bootsep.pipeline.teachers.delay_jsd`); its posteriors are all 1.

    ``prior``: optional ``(B, T, F, K)`` per-bin source probabilities (a student's masks;
    rows renormalised, floored at ``MASK_PRIOR_FLOOR``) combined with the spatial model as a
    product of experts with exponent ``prior_weight`` >= 0 (module docstring); without
    ``init_posteriors`` the PHAT init's components are first matched to the prior's order.
    ``init_posteriors``: optional ``(B, T, F, K)`` source responsibilities that replace the PHAT
    init by one M-step. Zero rows are allowed on padding frames only. Both None: unchanged.
    """
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[1] < 2:
        raise BootsepError(f"delay_masks needs X of shape (B, C, T, F) with C >= 2, got {X.shape}")
    B, C, T, F = X.shape
    P, K = C - 1, int(num_components)
    if K < 1:
        raise BootsepError(f"delay_masks: num_components must be >= 1, got {num_components}")
    if valid is None:
        valid = np.ones((B, T), bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (B, T):
        raise BootsepError(f"delay_masks: valid frames {valid.shape} != (B, T) = {(B, T)}")
    if freqs is None:
        if sample_rate is None or n_fft is None:
            raise BootsepError("delay_masks needs freqs, or sample_rate and n_fft")
        freqs = bin_frequencies(sample_rate, n_fft)
    freqs = np.asarray(freqs, dtype=np.float64)
    if freqs.shape != (F,) or not np.all(np.isfinite(freqs)) or freqs.max(initial=0) <= 0:
        raise BootsepError(f"delay_masks: freqs must be ({F},) finite Hz, got {freqs.shape}")
    if max_iter < 1 or tol < 0 or not 0 < outlier_prior < 1 or not kappa_max > KAPPA_MIN:
        raise BootsepError(f"delay_masks: unusable max_iter={max_iter}, tol={tol}, "
                           f"outlier_prior={outlier_prior} or kappa_max={kappa_max}")
    beta = float(prior_weight)
    if not np.isfinite(beta) or beta < 0:
        raise BootsepError(f"delay_masks: prior_weight must be finite and >= 0, got {prior_weight}")
    q = None if prior is None else _bin_distribution(prior, "prior", valid, K)
    r_init = None if init_posteriors is None else \
        _bin_distribution(init_posteriors, "init_posteriors", valid, K)
    # product of experts: the log-joint of source k gets beta log(K q_k), the outlier 0 (the
    # issue's beta log q_k and beta log(1/K), shifted by beta log K: a uniform prior adds 0)
    lq = None if q is None else beta * np.log(K * np.maximum(q, MASK_PRIOR_FLOOR))
    del q
    fs = 2.0 * freqs.max()
    geometry = mic_pos is not None
    if geometry:
        mic_pos = np.asarray(mic_pos, dtype=np.float64)
        if mic_pos.shape != (C, 3) or not np.all(np.isfinite(mic_pos)):
            raise BootsepError(f"delay_masks: mic_pos must be ({C}, 3) metres, got "
                               f"{mic_pos.shape}")
        az = np.arange(0.0, 360.0, float(azimuth_step_deg))
        grid = _Grid(freqs, far_field_delays(mic_pos, az, speed_of_sound).T, circular=True,
                     step=float(azimuth_step_deg))
        sep = max(1, int(round(min_separation_deg / azimuth_step_deg)))
    else:
        step = float(delay_step_s) if delay_step_s else 1.0 / (16.0 * fs)
        n = int(np.ceil(max_delay_s / step - 1e-9))
        taus = np.arange(-n, n + 1) * step
        grid = _Grid(freqs, taus[None, :], circular=False, step=step)
        sep_s = float(min_separation_s) if min_separation_s else 0.5 / fs
        sep = max(1, int(round(sep_s / step)))

    # observations: unit phasors of the pairs (0 where a channel is 0 or not finite),
    # fit bins, weights; layout (B, F, T, 2P) for per-frequency matmuls
    x0 = X[:, 0]
    logmag = log_magnitude_db(x0)
    cross = X[:, 1:] * np.conj(x0)[:, None]                            # (B, P, T, F)
    mag = np.abs(cross)
    usable = np.isfinite(mag) & (mag > 0)
    fit = _fit_mask(logmag, valid, threshold_db) & usable.all(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(usable, cross / np.where(usable, mag, 1.0), 0.0)
    Z = np.empty((B, F, T, 2 * P), _DT)
    Z[..., :P] = u.real.transpose(0, 3, 2, 1)
    Z[..., P:] = u.imag.transpose(0, 3, 2, 1)
    del cross, mag, u
    a0 = np.abs(x0).astype(np.float64)
    w = np.where(fit, np.where(np.isfinite(a0), a0, 0.0) ** float(weight_power), 0.0)
    wmax = w.max(axis=(1, 2), keepdims=True, initial=0.0)
    w = (w / np.where(wmax > 0, wmax, 1.0)).transpose(0, 2, 1).astype(_DT)  # (B, F, T)
    counts = np.count_nonzero(fit, axis=(1, 2)).astype(np.int64)

    # a pair with no spatial cue (a channel silent, or a copy up to gain/sign), judged by the
    # same check as the paper's teacher (bootsep.pipeline.channels): flagged degenerate
    no_cue = np.stack([check_channel_pair(x0, X[:, c], valid).flagged for c in range(1, C)],
                      axis=1).any(axis=1)

    # init: K peaks of the PHAT delay spectrum, deflated (SRP-PHAT with geometry, GCC-PHAT of
    # pair 1 without), then EM
    phat = fit.transpose(0, 2, 1).astype(_DT)                        # (B, F, T)
    kappa0 = np.full((B, K, P), float(kappa_init))
    logpri0 = np.log(np.concatenate([np.full((B, K), (1.0 - outlier_prior) / K),
                                     np.full((B, 1), outlier_prior)], axis=1))
    model = _Model(freqs, grid, kappa_max)
    if r_init is not None:
        # one M-step from the given responsibilities (scaled by 1 - outlier_prior, the outlier's
        # set to outlier_prior: the delays and kappas are those of outlier responsibility 0,
        # the priors start as without init); every pair at once (the given posteriors label
        # the pairs consistently), over the azimuth grid with geometry
        gidx0 = np.zeros((B, K)) if geometry else None
        r0 = (1.0 - outlier_prior) * r_init
        ro0 = np.full((B, F, T), float(outlier_prior))
        del r_init
        state = model.mstep(Z, w, r0, ro0, _State(logpri0, np.zeros((B, K, P)), kappa0, gidx0))
        del r0, ro0
        state, n_iter, conv, ll = model.em(Z, w, state, max_iter, tol, lq)
    elif geometry:
        idx = _init_peaks(Z, phat, grid, K, sep)
        state = _State(logpri0, grid.delays_at(idx), kappa0, idx)
        if lq is not None:
            state = _match_to_prior(model, Z, w, state, lq)
        state, n_iter, conv, ll = model.em(Z, w, state, max_iter, tol, lq)
    else:
        Z1 = Z if P == 1 else np.ascontiguousarray(Z[..., [0, P]])
        tau1 = grid.delays_at(_init_peaks(Z1, phat, grid, K, sep))          # (B, K, 1)
        if lq is not None:
            tau1 = _match_to_prior(model, Z1, w, _State(logpri0, tau1, kappa0[..., :1], None),
                                   lq).tau
        if P == 1:
            state = _State(logpri0, tau1, kappa0, None)
            state, n_iter, conv, ll = model.em(Z, w, state, max_iter, tol, lq)
        else:
            s1 = _State(logpri0, tau1, kappa0[..., :1], None)
            s1, _, _, _ = model.em(Z1, w, s1, max_iter, tol, lq)
            r, ro, _ = model.estep(Z1, w, s1, lq)
            del Z1
            state = model.mstep(Z, w, r, ro, _State(s1.logpri, np.zeros((B, K, P)), kappa0,
                                                     None))
            state, n_iter, conv, ll = model.em(Z, w, state, max_iter, tol, lq)

    # final posteriors of every bin at the fitted parameters
    L, lo = model.loglik(Z, state, lq)                                       # (B, F, T, K)
    del lq
    post = _softmax(L)
    m = np.maximum(L.max(axis=-1), lo[:, None, None])
    total = np.exp(L - m[..., None]).sum(axis=-1) + np.exp(lo[:, None, None] - m)
    out_post = (np.exp(lo[:, None, None] - m) / total).astype(np.float32)
    del L, m, total

    priors = np.exp(state.logpri)
    delays, kappa = state.tau, state.kappa
    directions = None if state.grid_idx is None else (state.grid_idx * grid.step) % 360.0
    order = np.argsort(-priors[:, :K], axis=1, kind="stable")
    post = np.take_along_axis(post, order[:, None, None, :], axis=-1)
    delays = np.take_along_axis(delays, order[..., None], axis=1)
    kappa = np.take_along_axis(kappa, order[..., None], axis=1)
    src_pri = np.take_along_axis(priors[:, :K], order, axis=1)
    if directions is not None:
        directions = np.take_along_axis(directions, order, axis=1)

    coincident = _coincident_pairs(delays, directions, grid.step).any(axis=(1, 2))
    degenerate = (counts < 2) | no_cue | coincident \
        | (src_pri.min(axis=1) < min_source_share * src_pri.sum(axis=1))
    posts = post.transpose(0, 2, 1, 3)                                       # (B, T, F, K)
    posts = np.ascontiguousarray(posts, dtype=np.float32)
    out_post = np.ascontiguousarray(out_post.transpose(0, 2, 1))
    labels = np.argmax(posts, axis=-1).astype(np.uint8)
    flat = ~valid[:, :, None] | degenerate[:, None, None]                    # (B, T, 1)
    flat = np.broadcast_to(flat, (B, T, F))
    posts[flat] = 1.0 / K
    labels[flat] = 0
    out_post[~np.broadcast_to(valid[:, :, None], (B, T, F))] = 0.0
    return DelayResult(
        posteriors=posts, labels=labels, outlier_posterior=out_post, priors=src_pri,
        outlier_prior=priors[:, K], delays=delays, directions=directions, kappa=kappa,
        log_likelihood=ll, n_iter=n_iter, converged=conv, degenerate=degenerate,
        fit_mask=fit, fit_bins=counts)


# --------------------------------------------------------------------------- internals

@dataclass
class _State:
    """Parameters of a batch: log priors ``(B, K + 1)`` (outlier last), delays ``(B, K, P)``
    seconds, concentrations ``(B, K, P)``, and with geometry the (fractional) azimuth grid
    index ``(B, K)``."""

    logpri: np.ndarray
    tau: np.ndarray
    kappa: np.ndarray
    grid_idx: np.ndarray | None

    def rows(self, sel) -> _State:
        g = None if self.grid_idx is None else self.grid_idx[sel]
        return _State(self.logpri[sel], self.tau[sel], self.kappa[sel], g)

    def assign(self, sel, other: _State) -> None:
        self.logpri[sel], self.tau[sel], self.kappa[sel] = other.logpri, other.tau, other.kappa
        if self.grid_idx is not None:
            self.grid_idx[sel] = other.grid_idx


class _Grid:
    """The search grid: ``delays (P, G)`` seconds per pair and grid point (one row broadcast
    to all pairs without geometry, where the grid is per pair), with its cos/sin tables."""

    def __init__(self, freqs: np.ndarray, delays: np.ndarray, circular: bool, step: float):
        self.freqs, self.circular, self.step = freqs, circular, step
        self.delays = np.ascontiguousarray(delays)
        ph = _TWO_PI * freqs[None, :, None] * self.delays[:, None, :]       # (P', F, G)
        self.size = self.delays.shape[1]
        self.cos = np.ascontiguousarray(np.cos(ph).reshape(-1, self.size))  # (P' F, G)
        self.sin = np.ascontiguousarray(np.sin(ph).reshape(-1, self.size))

    def pair_spectrum(self, S: np.ndarray) -> np.ndarray:
        """``sum_f Re[S(f) exp(j 2 pi f tau_g)]`` for ``S (..., F)`` complex, every pair on the
        shared 1-D delay grid -> ``(..., G)``."""
        F = S.shape[-1]
        flat = S.reshape(-1, F)
        out = np.ascontiguousarray(flat.real) @ self.cos \
            - np.ascontiguousarray(flat.imag) @ self.sin
        return out.reshape(S.shape[:-1] + (self.size,))

    def spectrum(self, S: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Direction grid: ``sum_c weight_c sum_f Re[S_c(f) exp(j 2 pi f tau_c(g))]`` for
        ``S (B, K, P, F)`` and ``weight (B, K, P)`` -> ``(B, K, G)``."""
        B, K, P, F = S.shape
        sw = (S * weight[..., None]).reshape(B * K, P * F)
        out = np.ascontiguousarray(sw.real) @ self.cos - np.ascontiguousarray(sw.imag) @ self.sin
        return out.reshape(B, K, self.size)

    def delays_at(self, idx: np.ndarray) -> np.ndarray:
        """Delays ``(B, K, P)`` at fractional grid indices ``idx (B, K)`` (linear
        interpolation of the grid, circular for directions; exact for the 1-D delay grid)."""
        G = self.size
        lo = np.floor(idx).astype(np.int64)
        frac = (idx - lo)[..., None]
        if self.circular:
            a, b = self.delays[:, lo % G], self.delays[:, (lo + 1) % G]      # (P, B, K)
        else:
            a, b = self.delays[:, np.clip(lo, 0, G - 1)], self.delays[:, np.clip(lo + 1, 0, G - 1)]
        return np.moveaxis(a, 0, -1) * (1 - frac) + np.moveaxis(b, 0, -1) * frac


class _Model:
    """E- and M-steps of the tied-delay model on phasors ``Z (B, F, T, 2P)`` with weights
    ``w (B, F, T)`` (both possibly a subset of the pairs: P is read from the state)."""

    def __init__(self, freqs: np.ndarray, grid: _Grid, kappa_max: float):
        self.freqs, self.grid, self.kappa_max = freqs, grid, kappa_max

    def loglik(self, Z: np.ndarray, s: _State,
               lq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Joint log-densities ``log pi_k + log p(theta | k)`` ``(B, F, T, K)`` float64 and the
        outlier's ``(B,)``; plus the per-bin prior term ``lq (B, F, T, K)`` when given."""
        B, K, P = s.tau.shape
        mu = -_TWO_PI * self.freqs[None, :, None, None] * s.tau[:, None]     # (B, F, K, P)
        kap = s.kappa[:, None]                                               # (B, 1, K, P)
        A = np.concatenate([kap * np.cos(mu), kap * np.sin(mu)], axis=-1)    # (B, F, K, 2P)
        L = np.matmul(Z, A.transpose(0, 1, 3, 2).astype(_DT))         # (B, F, T, K)
        log_norm = np.log(_TWO_PI * i0e(s.kappa)) + s.kappa                  # log 2 pi I0
        const = s.logpri[:, :K] - log_norm.sum(axis=-1)                      # (B, K)
        L += const[:, None, None, :].astype(_DT)
        if lq is not None:
            L += lq
        return L, s.logpri[:, K] - P * np.log(_TWO_PI)

    def estep(self, Z, w, s: _State, lq: np.ndarray | None = None):
        """Source responsibilities ``(B, F, T, K)`` and the outlier's ``(B, F, T)`` (float64),
        and the weighted mean log-likelihood ``(B,)`` (with the prior term ``lq`` when given:
        the weighted mean log normaliser of the product of experts)."""
        L, lo = self.loglik(Z, s, lq)
        B, F, T, K = L.shape
        lo32 = lo.astype(_DT)[:, None, None]
        m = np.array(np.broadcast_to(lo32, (B, F, T)))      # running max (loops over K: a
        for k in range(K):                                  # reduction over a short last
            np.maximum(m, L[..., k], out=m)                 # axis is slow in numpy)
        L -= m[..., None]
        np.exp(L, out=L)
        ro = np.exp(lo32 - m)
        tot = ro.copy()
        for k in range(K):
            tot += L[..., k]
        L /= tot[..., None]
        ro /= tot
        np.log(tot, out=tot)
        tot += m                                                             # log p(theta)
        ll = np.einsum("bft,bft->b", w, tot, dtype=np.float64) / _wsum(w)
        return L, ro, ll

    def mstep(self, Z, w, r, ro, s: _State) -> _State:
        """New priors, delays (grid search + parabola) and concentrations from the
        responsibilities ``r (B, F, T, K)`` and ``ro (B, F, T)``."""
        B, K, P = s.tau.shape
        rw = r * w[..., None]                                                # (B, F, T, K)
        wf = w.reshape(B, 1, -1)
        mass = np.concatenate([np.matmul(wf, r.reshape(B, -1, K))[:, 0],    # (B, K + 1)
                               np.matmul(wf, ro.reshape(B, -1, 1))[:, 0]], axis=1)
        mass = mass.astype(np.float64)
        tot = mass.sum(axis=1, keepdims=True)
        pri = np.where(tot > 0, mass / np.maximum(tot, 1e-300), np.exp(s.logpri))
        pri = np.maximum(pri, PRIOR_FLOOR)
        logpri = np.log(pri / pri.sum(axis=1, keepdims=True))
        S = np.matmul(rw.transpose(0, 1, 3, 2), Z).astype(np.float64)       # (B, F, K, 2P)
        S = S.transpose(0, 2, 3, 1)                                          # (B, K, 2P, F)
        Sc = S[:, :, :P] + 1j * S[:, :, P:]                                  # (B, K, P, F)
        grid = self.grid
        if s.grid_idx is None:
            obj = grid.pair_spectrum(Sc)                                     # (B, K, P, G)
            idx = _refined_argmax(obj, circular=False)
            tau = grid.delays_at(idx.reshape(B, K * P)).reshape(B, K, P, 1)[..., 0]
            gidx = None
        else:
            obj = grid.spectrum(Sc, s.kappa)                                 # (B, K, G)
            gidx = _refined_argmax(obj, circular=True)
            tau = grid.delays_at(gidx)
        # kappa from the mean resultant length at the new delays (Banerjee et al. 2005)
        ph = _TWO_PI * self.freqs * tau[..., None]                           # (B, K, P, F)
        res = (Sc.real * np.cos(ph) - Sc.imag * np.sin(ph)).sum(axis=-1)
        mk = mass[:, :K, None]
        rbar = np.clip(np.where(mk > 0, res / np.maximum(mk, 1e-300), 0.0), 0.0, 1.0 - 1e-9)
        kappa = np.clip(rbar * (2 - rbar ** 2) / (1 - rbar ** 2), KAPPA_MIN, self.kappa_max)
        kappa = np.where(mk > 0, kappa, s.kappa)
        return _State(logpri, tau, kappa, gidx)

    def em(self, Z, w, state: _State, max_iter: int, tol: float,
           lq: np.ndarray | None = None):
        """Batched EM from ``state`` (with the per-bin prior term ``lq (B, F, T, K)`` in every
        E-step when given); a mixture stops updating once its weighted mean
        log-likelihood changes by less than ``tol``. Returns the state, n_iter, converged and
        the log-likelihood at the returned parameters (all ``(B,)``)."""
        B = Z.shape[0]
        state = _State(state.logpri.copy(), state.tau.copy(), state.kappa.copy(),
                       None if state.grid_idx is None else state.grid_idx.copy())
        ll = np.full(B, -np.inf)
        n_iter = np.zeros(B, np.int64)
        conv = np.zeros(B, bool)
        rows = np.arange(B)                   # working set (indices into B)
        Zw, ww, lqw = Z, w, lq
        for it in range(max_iter + 1):
            live = ~conv[rows]
            if not live.any():
                break
            if live.sum() <= 0.5 * rows.size:  # compact the working set
                rows, Zw, ww = rows[live], Zw[live], ww[live]
                lqw = None if lqw is None else lqw[live]
                live = np.ones(rows.size, bool)
            sw = state.rows(rows)
            r, ro, ll_new = self.estep(Zw, ww, sw, lqw)
            upd = rows[live]
            done = np.abs(ll_new[live] - ll[upd]) < tol
            ll[upd] = ll_new[live]
            conv[upd[done]] = True
            if it == max_iter:
                break
            step = live.copy()
            step[np.flatnonzero(live)[done]] = False
            if not step.any():
                break
            n_iter[rows[step]] = it + 1
            new = self.mstep(Zw[step], ww[step], r[step], ro[step], sw.rows(step))
            state.assign(rows[step], new)
        return state, n_iter, conv, ll


def _bin_distribution(a, name: str, valid: np.ndarray, K: int) -> np.ndarray:
    """Validate per-bin source probabilities ``(B, T, F, K)`` (finite, >= 0, a positive sum on
    every valid frame's bins) and return them renormalised over K as ``(B, F, T, K)`` float64
    (the model's layout); rows of padding frames that sum to 0 become uniform."""
    a = np.asarray(a)
    B, T = valid.shape
    if a.ndim != 4 or a.shape[:2] != (B, T) or a.shape[3] != K:
        raise BootsepError(f"delay_masks: {name} must be (B, T, F, K) = ({B}, {T}, F, {K}), "
                           f"got {a.shape}")
    a = np.asarray(a, dtype=_DT).transpose(0, 2, 1, 3)                      # (B, F, T, K)
    if not np.all(np.isfinite(a)):
        raise BootsepError(f"delay_masks: {name} has non-finite values")
    if np.any(a < 0):
        raise BootsepError(f"delay_masks: {name} has negative values")
    tot = a.sum(axis=-1, keepdims=True)
    zero = tot[..., 0] <= 0                                                 # (B, F, T)
    if np.any(zero & valid[:, None, :]):
        raise BootsepError(f"delay_masks: {name} sums to 0 over the sources in a valid bin")
    return np.ascontiguousarray(np.where(zero[..., None], 1.0 / K, a / np.where(tot > 0, tot, 1.0)))


def _match_to_prior(model: _Model, Z, w, state: _State, lq: np.ndarray) -> _State:
    """The init ``state`` with its sources permuted to follow the prior's order: the
    permutation maximising ``sum_bins w r_k log-prior-term`` of the no-prior responsibilities
    ``r`` at the init (kept unless strictly better than the identity, so a uniform prior keeps
    the init as it is)."""
    K = state.tau.shape[1]
    if K < 2:
        return state
    r, _, _ = model.estep(Z, w, state)
    score = np.einsum("bftk,bftj->bkj", r * w[..., None], lq)              # (B, K, K)
    perms = np.array(list(itertools.permutations(range(K))))               # (K!, K)
    tot = score[:, np.arange(K)[None, :], perms].sum(axis=-1)              # (B, K!)
    best = np.argmax(tot, axis=1)
    better = tot[np.arange(tot.shape[0]), best] > tot[:, 0] + 1e-9 * np.abs(tot[:, 0])
    perm = np.where(better[:, None], perms[best], np.arange(K)[None, :])   # (B, K): prior j
    inv = np.argsort(perm, axis=1)                                         # -> component
    g = None if state.grid_idx is None else np.take_along_axis(state.grid_idx, inv, axis=1)
    return _State(state.logpri, np.take_along_axis(state.tau, inv[..., None], axis=1),
                  np.take_along_axis(state.kappa, inv[..., None], axis=1), g)


def _wsum(w: np.ndarray) -> np.ndarray:
    """``(B,)`` total weight of each mixture, at least a tiny positive number."""
    return np.maximum(w.sum(axis=(1, 2), dtype=np.float64), 1e-300)


def _softmax(L: np.ndarray) -> np.ndarray:
    m = L.max(axis=-1, keepdims=True)
    e = np.exp(L - m)
    return e / e.sum(axis=-1, keepdims=True)


def _refined_argmax(obj: np.ndarray, circular: bool) -> np.ndarray:
    """Fractional index of the maximum along the last axis: the best grid point moved by the
    vertex of the parabola through it and its two neighbours (at most half a step; no move
    at the ends of a non-circular grid)."""
    G = obj.shape[-1]
    i = np.argmax(obj, axis=-1)
    im, ip = i - 1, i + 1
    edge = (im < 0) | (ip >= G)
    if circular:
        im, ip, edge = im % G, ip % G, np.zeros_like(edge)
    else:
        im, ip = np.clip(im, 0, G - 1), np.clip(ip, 0, G - 1)
    y0 = np.take_along_axis(obj, im[..., None], -1)[..., 0]
    y1 = np.take_along_axis(obj, i[..., None], -1)[..., 0]
    y2 = np.take_along_axis(obj, ip[..., None], -1)[..., 0]
    den = y0 - 2 * y1 + y2
    ok = (den < 0) & ~edge
    off = np.where(ok, 0.5 * (y0 - y2) / np.where(ok, den, -1.0), 0.0)
    return i + np.clip(off, -0.5, 0.5)


def _init_peaks(Z: np.ndarray, phat: np.ndarray, grid: _Grid, K: int, sep: int) -> np.ndarray:
    """Initial grid indices ``(B, K)``: greedy peaks of the PHAT delay spectrum of the phasors
    ``Z (B, F, T, 2P)`` over the bins weighted ``phat (B, F, T)`` (SRP-PHAT over all pairs on
    a direction grid, GCC-PHAT of a single pair on a delay grid; Knapp & Carter 1976). After
    each peak, every bin's weight is multiplied by its disagreement with the peak,
    ``(1 - mean_c cos(theta_c - mu_c)) / 2``, so that the next peak is that of the bins the
    sources found so far do not explain (a weak source hidden under the strong one's
    sidelobes). Peaks are local maxima at least ``sep`` grid points from the chosen ones;
    where none is left, the largest remaining grid point."""
    B, F, T, P2 = Z.shape
    P = P2 // 2
    G = grid.size
    avail = np.ones((B, G), bool)
    g = np.arange(G)
    out = np.empty((B, K), np.int64)
    wt = phat
    for k in range(K):
        S = np.matmul(wt[:, :, None, :], Z)[:, :, 0, :].astype(np.float64)  # (B, F, 2P)
        Sc = (S[..., :P] + 1j * S[..., P:]).transpose(0, 2, 1)              # (B, P, F)
        if grid.circular:
            spec = grid.spectrum(Sc[:, None], np.ones((B, 1, P)))[:, 0]     # (B, G)
        else:
            spec = grid.pair_spectrum(Sc[:, 0])
        left, right = np.roll(spec, 1, axis=1), np.roll(spec, -1, axis=1)
        if not grid.circular:
            left[:, 0], right[:, -1] = -np.inf, -np.inf
        cand = np.where((spec >= left) & (spec >= right) & avail, spec, -np.inf)
        fb = np.where(avail, spec, -np.inf)
        out[:, k] = np.where(np.isfinite(cand.max(axis=1)), cand.argmax(axis=1),
                             fb.argmax(axis=1))
        d = np.abs(g[None, :] - out[:, k, None])
        if grid.circular:
            d = np.minimum(d, G - d)
        avail &= d >= sep
        if k + 1 < K:                                                        # deflate
            tau = grid.delays_at(out[:, k, None].astype(np.float64))[:, 0]  # (B, P)
            mu = -_TWO_PI * grid.freqs[None, :, None] * tau[:, None, :]     # (B, F, P)
            A = np.concatenate([np.cos(mu), np.sin(mu)], axis=-1) / P      # (B, F, 2P)
            mean_cos = np.matmul(Z, A[..., None].astype(_DT))[..., 0]  # (B, F, T)
            wt = wt * (0.5 - 0.5 * mean_cos)
    return out.astype(np.float64)


def _coincident_pairs(delays: np.ndarray, directions: np.ndarray | None,
                      step: float) -> np.ndarray:
    """``(B, K, K)`` bool, True at ``[b, i, j]``, i < j, when sources i and j are within one
    grid step of each other (every pair's delay, or the direction on the circle)."""
    K = delays.shape[1]
    upper = np.triu(np.ones((K, K), bool), 1)
    if directions is None:
        close = np.all(np.abs(delays[:, :, None] - delays[:, None, :]) <= step, axis=-1)
    else:
        d = np.abs(directions[:, :, None] - directions[:, None, :]) % 360.0
        close = np.minimum(d, 360.0 - d) <= step
    return close & upper
