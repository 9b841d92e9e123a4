"""The ``iva`` spatial teacher: determined blind source separation by independent vector
analysis (pyroomacoustics' AuxIVA), its outputs turned into soft masks, per mixture over a
padded batch.

For a mixture STFT ``X (C, T, F)`` with reference channel 0, AuxIVA (Ono 2011) finds per
frequency a demixing matrix ``W(f)`` so that the outputs ``Y(t, f) = W(f) Z(t, f)`` are
independent, each output one vector over all frequencies with a shared time-varying scale
(``model``: ``gauss``, time-varying Gaussian, or ``laplace``), which ties the frequencies of a
source together (no permutation problem): ``pyroomacoustics.bss.auxiva``. The outputs are
scaled by projection back onto the reference microphone
(``pyroomacoustics.bss.projection_back``: per output and frequency the least-squares gain to
``X_0``, so that ``sum_k Y_k ~ X_0``), then turned into ratio masks::

    M_k(t, f) = |Y_k(t, f)|^p / sum_j |Y_j(t, f)|^p             (p = ``mask_power``)

With C == K, ``Z = X``. With C > K (``overdetermined``): ``pca`` (default) takes the K
principal components of the channel covariance per frequency (``Z = U_K(f)^H X``, the
classic dimension reduction before ICA), ``overiva`` runs pyroomacoustics' OverIVA
(Scheibler & Ono 2019, ``auxiva(X, n_src=K)``) on all C channels. Measured on 16 free-field
two-talker mixtures (3 s at 8 kHz, the 8-microphone 5 cm circular array, azimuths 30-150
degrees apart; mean SI-SDRi of the masks on channel 0, defaults unless stated): ``pca``
16.2 dB at 47 ms a mixture; OverIVA fails on noise-free anechoic mixtures (the 8-channel
covariance is close to rank K, its (K+1)-th eigenvalue about 1e-4 of the largest, and one of
its linear solves is singular: 15 of 16 degenerate) and with a white noise
floor about 43 dB down reaches 14.7 dB (``laplace``: 13.2) at 260 ms, where ``pca`` keeps
16.2 dB. Two channels: the pair (0, 1) 14.6 dB, the pair (0, 4) (largest aperture) 12.2 dB,
so no channel picking. ``gauss`` beats ``laplace`` (pair 14.6 / 14.0, 8 microphones 16.2 /
14.3), ``p = 2`` beats ``p = 1`` (14.6 / 13.2, 16.2 / 14.9); 30 iterations: 20 leave one
8-microphone mixture at -0.6 dB (mean 15.2), 40 change nothing (pair: 20, 30 and 40 all
14.6). The ``delay`` teacher on the same mixtures: 13.9 dB (pair, no geometry), 16.1 dB (8
microphones, geometry); with the noise floor ``iva`` on the pair drops to 12.5 dB
(``delay`` 13.8): 4 of the 16 pairs end below 5 dB (-3.2 to 4.7; talkers 30-100 degrees
apart, not the closest ones), a poor stationary point of IVA from the identity start.

The library is deterministic: the demixing matrices start at the identity and no random
numbers are drawn (pyroomacoustics' ILRMA and FastMNMF would draw from numpy's global RNG;
they are not used; its ``init_eig`` option fails with n_src < C).

IVA runs on the valid frames of one mixture at a time (pyroomacoustics has no batch axis;
the per-frame and per-frequency work inside it is vectorised), in complex128, on the STFT
divided by the RMS of its reference channel (AuxIVA floors the source scale at 1e-15,
absolute; the masks do not depend on the scale otherwise). Frequencies whose K-th largest
covariance eigenvalue is below :data:`ACTIVE_EIGENVALUE` times the largest eigenvalue of
the mixture (no energy, e.g. a band-limited recording) are left out of IVA and keep uniform
masks: IVA's linear solves are singular there. The work is small batched BLAS/LAPACK calls:
the stage's Dask workers run one BLAS thread each (:mod:`bootsep.pipeline.parallel`), and a
benchmark should do the same (``threadpoolctl.threadpool_limits(1)``). Measured with one
thread, T = 400 frames, F = 129, K = 2, 30 iterations, beside one other busy process on this
2-core machine: 29 ms a mixture with C = 2, 46 ms with C = 8 (``delay_masks``: 43 / 71 ms).

Sources are ordered by descending share of the masked reference magnitude
(``sum |X_0| M_k / sum |X_0|`` over the valid bins). The share does not identify one-source
mixtures (the second output of a single talker took 5-8 % with 2 microphones but up to 46 %
with 8), so no mixture is flagged on it. Degenerate mixtures get exactly uniform posteriors,
like padding frames: a channel without spatial cue against channel 0 (silent or a copy up to
gain/sign, :func:`bootsep.pipeline.channels.check_channel_pair`, as the other teachers judge
it), fewer than ``min_frames`` valid frames (or fewer than C), fewer than 2 fit bins
(silence), fewer than 2 frequencies with signal, a singular solve or a floating-point error
inside IVA, or a non-finite output. ``fit_mask`` (valid non-zero bins, ``20 log10 |X_0|``
more than ``threshold_db`` above the loudest valid bin, as in
:mod:`bootsep.pipeline.teachers.delay`) is reported for the confidence statistics; IVA
itself uses every valid frame and frequency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bootsep.errors import BootsepError
from bootsep.pipeline.channels import check_channel_pair
from bootsep.pipeline.features import fit_mask as _fit_mask
from bootsep.pipeline.features import log_magnitude_db

__all__ = ["IvaResult", "iva_masks", "MODELS", "OVERDETERMINED"]

MODELS = ("gauss", "laplace")   # pyroomacoustics' source models
OVERDETERMINED = ("pca", "overiva")
ACTIVE_EIGENVALUE = 1e-10       # a frequency whose K-th eigenvalue of the channel covariance is
                                # below this times the largest one's (any frequency) is skipped


@dataclass(frozen=True)
class IvaResult:
    """Output of :func:`iva_masks` for a batch of ``B`` mixtures and ``K`` sources.

    posteriors: ``(B, T, F, K)`` float32 ratio masks (sum 1 over K), exactly ``1/K`` on padding
    frames and for degenerate mixtures; labels: ``(B, T, F)`` uint8 argmax (0 on padding and
    degenerate mixtures); shares: ``(B, K)`` float64 share of the reference magnitude each
    source's mask takes (descending; ``1/K`` when degenerate); degenerate: ``(B,)`` bool;
    fit_mask: ``(B, T, F)`` bool (statistics only, see the module docstring); fit_bins:
    ``(B,)`` int64; n_iter: ``(B,)`` int64 IVA iterations run (0 when degenerate).
    """

    posteriors: np.ndarray
    labels: np.ndarray
    shares: np.ndarray
    degenerate: np.ndarray
    fit_mask: np.ndarray
    fit_bins: np.ndarray
    n_iter: np.ndarray


def iva_masks(X: np.ndarray, valid: np.ndarray | None = None, *, num_components: int = 2,
              n_iter: int = 30, model: str = "gauss", mask_power: float = 2.0,
              overdetermined: str = "pca", threshold_db: float = -40.0,
              min_frames: int = 16) -> IvaResult:
    """Separate every mixture of a padded batch by IVA and return its ratio masks.

    ``X``: complex ``(B, C, T, F)`` STFTs, C >= ``num_components`` >= 2, channel 0 the
    reference; ``valid``: ``(B, T)`` bool real frames (None: all). ``n_iter`` AuxIVA
    iterations with the source ``model`` (``gauss`` or ``laplace``); ``mask_power`` p of the
    ratio masks; with C > K, ``overdetermined`` is ``pca`` (AuxIVA on the K principal
    components per frequency) or ``overiva`` (pyroomacoustics' OverIVA on all C channels).
    ``threshold_db`` defines ``fit_mask``; a mixture with fewer than ``min_frames`` valid
    frames is degenerate.
    """
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[1] < 2:
        raise BootsepError(f"iva_masks needs X of shape (B, C, T, F) with C >= 2, got {X.shape}")
    B, C, T, F = X.shape
    K = int(num_components)
    if not 2 <= K <= C:
        raise BootsepError(f"iva_masks: num_components must be in [2, C = {C}], got "
                           f"{num_components}")
    if valid is None:
        valid = np.ones((B, T), bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (B, T):
        raise BootsepError(f"iva_masks: valid frames {valid.shape} != (B, T) = {(B, T)}")
    if (n_iter < 1 or model not in MODELS or not mask_power > 0 or min_frames < 1
            or overdetermined not in OVERDETERMINED):
        raise BootsepError(f"iva_masks: unusable n_iter={n_iter}, model={model!r} (one of "
                           f"{MODELS}), mask_power={mask_power}, overdetermined="
                           f"{overdetermined!r} (one of {OVERDETERMINED}) or "
                           f"min_frames={min_frames}")

    x0 = X[:, 0]
    fit = _fit_mask(log_magnitude_db(x0), valid, threshold_db) & (x0 != 0) & np.isfinite(x0)
    counts = np.count_nonzero(fit, axis=(1, 2)).astype(np.int64)
    n_valid = np.count_nonzero(valid, axis=1)
    no_cue = np.stack([check_channel_pair(x0, X[:, c], valid).flagged for c in range(1, C)],
                      axis=1).any(axis=1)
    degenerate = no_cue | (counts < 2) | (n_valid < max(int(min_frames), C))

    posts = np.full((B, T, F, K), 1.0 / K, np.float32)
    shares = np.full((B, K), 1.0 / K)
    iters = np.zeros(B, np.int64)
    pca = overdetermined == "pca"
    for b in np.flatnonzero(~degenerate):
        masks, share = _separate(X[b][:, valid[b]], K, n_iter, model, mask_power, pca)
        if masks is None:
            degenerate[b] = True
            continue
        posts[b, valid[b]] = masks
        shares[b] = share
        iters[b] = n_iter
    labels = np.argmax(posts, axis=-1).astype(np.uint8)
    labels[~valid | degenerate[:, None]] = 0
    return IvaResult(posteriors=posts, labels=labels, shares=shares, degenerate=degenerate,
                     fit_mask=fit, fit_bins=counts, n_iter=iters)


def _separate(Xb: np.ndarray, K: int, n_iter: int, model: str, p: float, pca: bool
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Ratio masks ``(T', F, K)`` float32 (sources by descending share) and shares ``(K,)`` of
    one mixture's valid frames ``Xb (C, T', F)``; ``(None, None)`` when IVA fails (singular
    covariance, non-finite output)."""
    from pyroomacoustics.bss import auxiva, projection_back

    Xd = np.moveaxis(Xb, 0, -1).astype(np.complex128)                   # (T', F, C)
    if not np.all(np.isfinite(Xd)):
        return None, None
    rms = np.sqrt(np.mean(np.abs(Xd[..., 0]) ** 2))
    if not rms > 0:
        return None, None
    Xd /= rms
    n_frames, n_freq, C = Xd.shape
    # per-frequency channel covariance; its eigenvalues (ascending) find the frequencies with
    # no K-dimensional signal (e.g. no energy), where IVA's linear solves are singular: those
    # keep uniform masks
    cov = np.einsum("tfc,tfd->fcd", Xd, Xd.conj()) / n_frames
    lam, vec = np.linalg.eigh(cov)                                       # (F, C), (F, C, C)
    active = lam[:, C - K] > ACTIVE_EIGENVALUE * lam[:, -1].max()
    if np.count_nonzero(active) < 2:
        return None, None
    Xa = Xd[:, active]
    if pca and C > K:
        # the K principal components per frequency (largest eigenvalues first)
        U = vec[active][:, :, ::-1][:, :, :K]                            # (F', C, K)
        Z = np.einsum("fck,tfc->tfk", U.conj(), Xa)
        n_src = None
    else:
        Z, n_src = Xa, K
    try:
        with np.errstate(divide="raise", invalid="raise", over="raise"):
            Y = auxiva(Z, n_src=n_src, n_iter=n_iter, proj_back=False, model=model)
            Y = Y * np.conj(projection_back(Y, Xa[..., 0]))[None]        # (T', F', K)
    except (np.linalg.LinAlgError, FloatingPointError):
        # a singular covariance or a division by zero inside IVA: no usable demixing, the
        # mixture is reported degenerate (uniform posteriors), not hidden
        return None, None
    A = np.abs(Y) ** p
    if not np.all(np.isfinite(A)):
        return None, None
    total = A.sum(axis=-1, keepdims=True)
    masks = np.full((n_frames, n_freq, K), 1.0 / K)
    masks[:, active] = np.where(total > 0, A / np.where(total > 0, total, 1.0), 1.0 / K)
    mag = np.abs(Xd[..., 0])[..., None]
    share = (mag * masks).sum(axis=(0, 1)) / mag.sum()
    order = np.argsort(-share, kind="stable")
    return masks[..., order].astype(np.float32), share[order]
