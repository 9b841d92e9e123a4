"""The ``delay`` teacher and its confidence written plainly for ONE mixture: the reference of
``bench/spatial_throughput.py --method delay`` (not used by the pipeline).

The same model as :mod:`bootsep.pipeline.teachers.delay` (tied-delay wrapped-phase mixture
with an outlier, weighted EM), :mod:`bootsep.pipeline.teachers.delay_jsd` (generalised eq. 5)
and the confidence stage (eqs. 4, 6), as a straightforward numpy script would write it: one
mixture's ``(T, F, P)`` phasors, a loop over the sources in the E- and M-steps, a grid
search of each source's delay (or direction) over a precomputed ``exp(j 2 pi f tau)`` table,
Monte Carlo JSD with a loop over nothing but the two models. No batching, working sets or
float32 work arrays. Differences from the pipeline, by design of a plain script: the STFT is
``scipy.signal.stft`` (its own framing and scaling; the fit threshold is relative, the
weights are normalised, so only the frame alignment differs), all its frames are real, and
the channel-pair check (a dead or copied channel) is left out (the bench's synthetic
mixtures have none). Free delays (no geometry) are supported for one pair only; with more
microphones the geometry is needed (the bench always has it).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import i0e

TWO_PI = 2.0 * np.pi
KAPPA_MIN = 1e-3
PRIOR_FLOOR = 1e-6


def read_stft(path, channels, st) -> tuple[np.ndarray, np.ndarray]:
    """soundfile read + ``scipy.signal.stft`` of ``channels``: ``(C, T, F)`` and ``freqs (F,)``
    (``st``: the ``stft`` params section)."""
    import soundfile as sf
    from scipy.signal import stft as sp_stft

    audio, fs = sf.read(str(path), dtype="float32", always_2d=True)
    win = int(round(st.window_ms * fs / 1000))
    hop = int(round(st.hop_ms * fs / 1000))
    freqs, _, z = sp_stft(audio[:, list(channels)].T, fs=fs, window=st.window, nperseg=win,
                          noverlap=win - hop)
    return z.transpose(0, 2, 1), freqs


class Grid:
    """Candidate delays ``D (G, P)`` seconds (free delays: one column shared by the pairs;
    directions: far-field delays of each azimuth) and the table ``E = exp(j 2 pi f D)``."""

    def __init__(self, freqs, opts, num_pairs, mic_pos=None, speed_of_sound=343.0):
        fs = 2.0 * freqs.max()
        if mic_pos is None:
            if num_pairs != 1:
                raise ValueError("the plain reference fits free delays on one pair only")
            self.step = 1.0 / (16.0 * fs)
            n = int(np.ceil(opts["max_delay_ms"] / 1000.0 / self.step - 1e-9))
            self.D = (np.arange(-n, n + 1) * self.step)[:, None]
            self.circular = False
            self.sep = max(1, int(round(0.5 / fs / self.step)))
        else:
            self.step = float(opts["azimuth_step_deg"])
            az = np.deg2rad(np.arange(0.0, 360.0, self.step))
            u = np.stack([np.cos(az), np.sin(az), np.zeros_like(az)], axis=1)      # (G, 3)
            self.D = -u @ (mic_pos[1:] - mic_pos[0]).T / speed_of_sound            # (G, P)
            self.circular = True
            self.sep = max(1, int(round(opts["min_separation_deg"] / self.step)))
        self.G = self.D.shape[0]
        self.E = np.exp(1j * TWO_PI * freqs[None, :, None] * self.D[:, None, :])   # (G, F, P)

    def delays_at(self, idx: float) -> np.ndarray:
        lo = int(np.floor(idx))
        frac = idx - lo
        if self.circular:
            a, b = self.D[lo % self.G], self.D[(lo + 1) % self.G]
        else:
            a, b = self.D[min(max(lo, 0), self.G - 1)], self.D[min(max(lo + 1, 0), self.G - 1)]
        return a * (1 - frac) + b * frac

    def refined_argmax(self, obj: np.ndarray) -> float:
        """Best grid point moved to the vertex of the parabola through it and its neighbours."""
        i = int(np.argmax(obj))
        if not self.circular and (i == 0 or i == self.G - 1):
            return float(i)
        y0, y1, y2 = obj[(i - 1) % self.G], obj[i], obj[(i + 1) % self.G]
        den = y0 - 2 * y1 + y2
        return float(i) if den >= 0 else i + float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))


def fit_delay_model(X, freqs, K, opts, mic_pos=None, speed_of_sound=343.0) -> dict:
    """EM of the K-source delay model on one mixture's STFT ``X (C, T, F)`` (channel 0 the
    reference): priors ``(K + 1,)`` (outlier last), delays/kappa ``(K, P)``, posteriors
    ``(T, F, K)``, labels, fit mask, degenerate; sources sorted by descending prior."""
    C, T, F = X.shape
    P = C - 1
    x0 = X[0]
    cross = X[1:] * np.conj(x0)[None]                                       # (P, T, F)
    mag = np.abs(cross)
    logmag = 20 * np.log10(np.maximum(np.abs(x0), 1e-8))
    fit = (logmag > logmag.max() + opts["threshold_db"]) & (mag > 0).all(axis=0)
    z = np.where(mag > 0, cross / np.where(mag > 0, mag, 1.0), 0).transpose(1, 2, 0)  # (T,F,P)
    w = np.where(fit, np.abs(x0).astype(np.float64) ** opts["weight_power"], 0.0)
    w /= max(w.max(), 1e-300)
    grid = Grid(freqs, opts, P, mic_pos, speed_of_sound)

    # init: greedy peaks of the PHAT delay spectrum, each explained part down-weighted
    wt = fit.astype(np.float64)
    avail = np.ones(grid.G, bool)
    tau = np.zeros((K, P))
    gidx = np.zeros(K)
    for k in range(K):
        S = (wt[..., None] * z).sum(axis=0)                                  # (F, P)
        spec = np.einsum("fp,gfp->g", S, grid.E).real
        left, right = np.roll(spec, 1), np.roll(spec, -1)
        if not grid.circular:
            left[0] = right[-1] = -np.inf
        cand = np.where((spec >= left) & (spec >= right) & avail, spec, -np.inf)
        g = int(np.argmax(cand)) if np.isfinite(cand.max()) else \
            int(np.argmax(np.where(avail, spec, -np.inf)))
        d = np.abs(np.arange(grid.G) - g)
        avail &= (np.minimum(d, grid.G - d) if grid.circular else d) >= grid.sep
        tau[k], gidx[k] = grid.D[g], g
        mean_cos = (z * np.exp(1j * TWO_PI * freqs[:, None] * tau[k])).real.mean(axis=-1)
        wt = wt * (0.5 - 0.5 * mean_cos)
    pri = np.r_[np.full(K, (1.0 - opts["outlier_prior"]) / K), opts["outlier_prior"]]
    kap = np.full((K, P), float(opts["kappa_init"]))

    def loglik(pri, tau, kap):
        L = np.empty((T, F, K + 1))
        for k in range(K):
            e = np.exp(1j * TWO_PI * freqs[:, None] * tau[k])                # exp(-j mu)
            L[..., k] = (np.log(pri[k]) + (kap[k] * (z * e).real).sum(axis=-1)
                         - (np.log(TWO_PI * i0e(kap[k])) + kap[k]).sum())
        L[..., K] = np.log(pri[K]) - P * np.log(TWO_PI)
        return L

    ll, converged, n_iter = -np.inf, False, 0
    for it in range(opts["max_iter"] + 1):
        L = loglik(pri, tau, kap)                                            # E-step
        lse = np.logaddexp.reduce(L, axis=-1)
        r = np.exp(L - lse[..., None])
        ll_new = float((w * lse).sum() / max(w.sum(), 1e-300))
        if abs(ll_new - ll) < opts["tol"]:
            converged = True
            break
        ll = ll_new
        if it == opts["max_iter"]:
            break
        n_iter = it + 1
        mass = (w[..., None] * r).sum(axis=(0, 1))                           # M-step
        new = mass / mass.sum() if mass.sum() > 0 else pri
        new = np.maximum(new, PRIOR_FLOOR)
        new_tau, new_kap = tau.copy(), kap.copy()
        for k in range(K):
            S = ((w * r[..., k])[..., None] * z).sum(axis=0)                 # (F, P)
            obj = np.einsum("fp,gfp->gp", S, grid.E).real                    # (G, P)
            if grid.circular:
                gidx[k] = grid.refined_argmax(obj @ kap[k])
                new_tau[k] = grid.delays_at(gidx[k])
            else:
                new_tau[k] = [grid.delays_at(grid.refined_argmax(obj[:, c]))[0]
                              for c in range(P)]
            if mass[k] > 0:
                res = (S * np.exp(1j * TWO_PI * freqs[:, None] * new_tau[k])).real.sum(axis=0)
                rbar = np.clip(res / mass[k], 0.0, 1.0 - 1e-9)
                new_kap[k] = np.clip(rbar * (2 - rbar ** 2) / (1 - rbar ** 2), KAPPA_MIN,
                                     opts["kappa_max"])
        pri, tau, kap = new / new.sum(), new_tau, new_kap

    L = loglik(pri, tau, kap)[..., :K]
    post = np.exp(L - np.logaddexp.reduce(L, axis=-1)[..., None])
    order = np.argsort(-pri[:K], kind="stable")
    pri = np.r_[pri[:K][order], pri[K]]
    tau, kap, post, gidx = tau[order], kap[order], post[..., order], gidx[order]
    coincident = False
    for i, j in itertools.combinations(range(K), 2):
        if grid.circular:
            d = abs(gidx[i] - gidx[j]) * grid.step % 360.0
            coincident |= min(d, 360.0 - d) <= grid.step
        else:
            coincident |= bool(np.all(np.abs(tau[i] - tau[j]) <= grid.step))
    degenerate = (fit.sum() < 2 or coincident
                  or pri[:K].min() < opts["min_source_share"] * pri[:K].sum())
    labels = post.argmax(axis=-1)
    if degenerate:
        post, labels = np.full_like(post, 1.0 / K), np.zeros_like(labels)
    return {"priors": pri, "delays": tau, "kappa": kap, "posteriors": post, "labels": labels,
            "fit": fit, "weights": w, "degenerate": bool(degenerate), "converged": converged,
            "n_iter": n_iter}


def log_density(m: dict, f: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``log p(theta | f)`` of a fitted model at draws ``f (N,)`` Hz, ``theta (N, P)``."""
    pri, tau, kap = m["priors"], m["delays"], m["kappa"]
    K, P = tau.shape
    terms = [np.full(f.shape, np.log(pri[K]) - P * np.log(TWO_PI))]
    for k in range(K):
        e = (kap[k] * np.cos(theta + TWO_PI * f[:, None] * tau[k])).sum(axis=1)
        terms.append(np.log(pri[k]) + e - (np.log(TWO_PI * i0e(kap[k])) + kap[k]).sum())
    return np.logaddexp.reduce(np.stack(terms), axis=0)


def draw(rng, m: dict, freqs: np.ndarray, fw: np.ndarray, n: int):
    """``n`` draws (frequency Hz, phase differences) of a fitted model."""
    pri, tau, kap = m["priors"], m["delays"], m["kappa"]
    K, P = tau.shape
    f = freqs[rng.choice(freqs.size, size=n, p=fw / fw.sum())]
    comp = rng.choice(K + 1, size=n, p=pri / pri.sum())
    src = np.minimum(comp, K - 1)
    theta = -TWO_PI * f[:, None] * tau[src] + rng.vonmises(0.0, kap[src])
    theta[comp == K] = rng.uniform(-np.pi, np.pi, (int((comp == K).sum()), P))
    return f, np.mod(theta + np.pi, TWO_PI) - np.pi


def jsd(m_k: dict, m_1: dict, freqs, fw, n: int, seed) -> float:
    """Generalised eq. 5: JSD (base 2) of the K- and 1-source models by Monte Carlo."""
    rng = np.random.default_rng(seed)
    f1, t1 = draw(rng, m_1, freqs, fw, n)
    fk, tk = draw(rng, m_k, freqs, fw, n)
    tp = np.logaddexp(0.0, log_density(m_k, f1, t1) - log_density(m_1, f1, t1)).mean()
    tq = np.logaddexp(0.0, log_density(m_1, fk, tk) - log_density(m_k, fk, tk)).mean()
    return float(np.clip(1.0 - 0.5 * (tp + tq) / np.log(2.0), 0.0, 1.0))


def reference_one(path, channels, cfg, mixture_id: str, geometry=None) -> dict:
    """The delay teacher and its confidences for one mixture file: ``channels`` the microphones
    used (channel 0 first), ``cfg`` the params (stft, spatial, confidence), ``geometry`` an
    :class:`~bootsep.pipeline.corpus.geometry.ArrayGeometry` (direction model) or None."""
    from bootsep.pipeline.jobs import mixture_seed

    X, freqs = read_stft(path, channels, cfg.stft)
    opts = cfg.spatial.delay.as_dict()
    K = cfg.spatial.num_components
    geo = {} if geometry is None else {"mic_pos": geometry.mic_pos[list(channels)],
                                       "speed_of_sound": geometry.speed_of_sound}
    m_k = fit_delay_model(X, freqs, K, opts, **geo)
    m_1 = fit_delay_model(X, freqs, 1, opts, **geo)
    fw = (m_k["weights"] * m_k["fit"]).sum(axis=0)                          # (F,)
    degenerate = m_k["degenerate"] or m_1["degenerate"] or fw.sum() <= 0
    c_jsd = 0.0 if degenerate else jsd(m_k, m_1, freqs, fw, cfg.confidence.jsd_samples,
                                       mixture_seed(cfg.confidence.seed, mixture_id))
    frac = np.bincount(m_k["labels"].ravel(), minlength=K) / m_k["labels"].size
    c_cl = 0.0 if m_k["degenerate"] else \
        float(1.0 - K / (2.0 * (K - 1)) * np.abs(frac - 1.0 / K).sum())     # eq. 4, all bins
    c_post = np.clip(K / (K - 1) * (m_k["posteriors"].max(axis=-1) - 1.0 / K), 0, 1)  # eq. 6
    mean_cp = float(c_post[m_k["fit"]].mean()) if m_k["fit"].any() else 0.0
    return {"c_cl": c_cl, "c_jsd": c_jsd, "mean_c_post": mean_cp,
            "mean_confidence": c_cl * c_jsd * mean_cp, "labels": m_k["labels"],
            "x0_mag": np.abs(X[0]), "result": m_k}
