"""Mask-based MVDR beamforming: a spatial teacher's masks steer a beamformer over its
microphones, whose outputs are its refined masks (``spatial.teachers.<name>.beamform: mvdr``)
and a separation of their own (the evaluate stage's ``beamformer_<teacher>`` rows).

A mask says which source dominates a bin; a beamformer turns that into a linear filter over
the microphones, which keeps the target's spatial image and cancels the other source in every
bin, also where the mask was wrong or the bin was shared (Heymann et al. 2016, Erdogan et al.
2016: masks from a clustering or a network, spatial covariances from the masked mixture).
In rooms the filter must span the room's impulse response: on the student's 32 ms grid a
rank-one target model fails, so the covariances are estimated on a long STFT (``window_ms``,
default 512 ms) from the masked multichannel images, and the beamformer runs there.

Measured (run of 69f37e2, the cacgmm_rooms teacher's masks, 8 mics; SI-SDRi on the validation
split, all / reverberant mixtures): its masks 8.05 / 4.75 dB; refined masks (one pass, 512 ms)
9.07 / 6.33, beamformer steered by them 11.86 / 7.20; at 256 ms 9.10 / 6.18 and 12.22 / 6.36;
a second pass 9.08 / 6.54 and 11.76 / 7.42 (bench/beamform.py).
"""

from __future__ import annotations

import numpy as np

from bootsep.pipeline.stft import StftConfig, istft, stft


def spatial_covariance(S: np.ndarray) -> np.ndarray:
    """Frame-averaged spatial covariance ``(..., F, C, C)`` of STFTs ``S (..., C, T, F)``:
    ``Phi(f) = 1/T sum_t s(t, f) s(t, f)^H``."""
    T = max(S.shape[-2], 1)
    return np.einsum("...ctf,...dtf->...fcd", S, S.conj()) / T


def souden_mvdr(target: np.ndarray, noise: np.ndarray, *, ref: int = 0,
                loading: float = 1e-3) -> np.ndarray:
    """MVDR weights ``(..., F, C)`` from target and noise covariances ``(..., F, C, C)``
    without a steering vector (Souden, Benesty & Affes 2010):
    ``w = Phi_n^-1 Phi_x u_ref / tr(Phi_n^-1 Phi_x)``; the noise covariance is loaded with
    ``loading`` times its mean diagonal (a silent or rank-deficient one stays invertible).
    For a rank-one target ``Phi_x = h h^H`` it is the distortionless filter of the image at
    microphone ``ref``: ``w^H h = h[ref]``."""
    C = noise.shape[-1]
    level = np.trace(noise, axis1=-2, axis2=-1).real / C
    eye = np.eye(C, dtype=noise.dtype)
    loaded = noise + (loading * level + np.finfo(np.float64).tiny ** 0.5)[..., None, None] * eye
    A = np.linalg.solve(loaded, target)                             # Phi_n^-1 Phi_x
    trace = np.trace(A, axis1=-2, axis2=-1)
    trace = np.where(np.abs(trace) > 1e-12, trace, 1e-12)
    return A[..., ref] / trace[..., None]


def apply_beamformer(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Beamformer outputs ``(..., T, F)``: ``y(t, f) = w(f)^H x(t, f)`` for weights
    ``w (..., F, C)`` and STFTs ``X (..., C, T, F)``."""
    return np.einsum("...fc,...ctf->...tf", w.conj(), X)


def mvdr_separate(audio: np.ndarray, masks: np.ndarray, cfg: StftConfig, long: StftConfig, *,
                  loading: float = 1e-3) -> np.ndarray:
    """Separate one mixture ``audio (C, L)`` (channel 0 the reference) by MVDR beamformers
    steered by ``masks (K, T, F)`` on the grid ``cfg``: source k's multichannel image is
    estimated as the masked mixture, its covariance and that of the other sources' images on
    the long STFT ``long`` give its MVDR filter; returns the outputs ``(K, L)``, estimates of
    each source's image at channel 0."""
    audio = np.asarray(audio, np.float32)
    L = audio.shape[-1]
    X = stft(audio, cfg)                                                   # (C, T, F)
    images = istft(masks[:, None] * X[None, :, :masks.shape[1]], cfg, L)  # (K, C, L)
    return mvdr_from_images(audio, images, long, loading=loading)


def mvdr_from_images(audio: np.ndarray, images: np.ndarray, long: StftConfig, *,
                     loading: float = 1e-3) -> np.ndarray:
    """The MVDR beamformers of :func:`mvdr_separate` from multichannel source images
    ``images (K, C, L)`` (estimated, or the true ones: an oracle), applied to ``audio (C, L)``;
    outputs ``(K, L)``."""
    L = audio.shape[-1]
    phi = spatial_covariance(stft(images, long).astype(np.complex128))    # (K, F', C, C)
    w = souden_mvdr(phi, phi.sum(axis=0) - phi, loading=loading)         # others: the noise
    Y = stft(np.asarray(audio, np.float32), long).astype(np.complex128)   # (C, T', F')
    return istft(apply_beamformer(w[:, None], Y[None])[:, 0], long, L)


def ratio_masks(outputs: np.ndarray, cfg: StftConfig, num_frames: int,
                power: float = 2.0) -> np.ndarray:
    """Ratio masks ``(K, num_frames, F)`` of signals ``outputs (K, L)`` on the grid ``cfg``:
    ``|Y_k|^p / sum_j |Y_j|^p`` (uniform where every output is silent)."""
    P = np.abs(stft(outputs, cfg)[:, :num_frames]).astype(np.float64) ** power
    total = P.sum(axis=0, keepdims=True)
    K = outputs.shape[0]
    return np.where(total > 0, P / np.where(total > 0, total, 1.0), 1.0 / K).astype(np.float32)


def refine_masks(audio: np.ndarray, masks: np.ndarray, cfg: StftConfig, long: StftConfig, *,
                 iterations: int = 1, loading: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """``iterations`` passes of :func:`mvdr_separate` and :func:`ratio_masks`, each steered
    by the previous pass's masks: the refined masks ``(K, T, F)`` and the last outputs
    ``(K, L)``."""
    outputs = None
    for _ in range(iterations):
        outputs = mvdr_separate(audio, masks, cfg, long, loading=loading)
        masks = ratio_masks(outputs, cfg, masks.shape[1])
    return masks, outputs
