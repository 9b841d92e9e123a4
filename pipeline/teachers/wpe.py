"""Weighted prediction error dereverberation (Nakatani et al. 2010; the nara-wpe package) of a
padded batch of multichannel STFTs, before a spatial teacher's fit (issue 23).

WPE predicts each microphone's late reverberation from ``taps`` earlier frames of every
microphone, ``delay`` frames back (the early reflections are kept), and subtracts it; the
prediction filter is re-estimated ``iterations`` times from the time-varying power of the
current estimate (nara-wpe's ``wpe`` loop, its building blocks). The power in the weights
``1 / lambda_t`` is floored at ``power_floor_db`` below the mixture's loudest bin: without a
floor, near-silent frames (digital silence around an utterance) get weights many orders of
magnitude above the speech. And the corpus's utterances are short (1.5-4 s: 50-500 frames)
for ``C * taps`` regressors per frequency: unregularised, the filter predicts the speech itself
(measured, one corpus utterance in a 6 x 5 m room, RT60 0.5 s, 8 mics, 32/8 ms, 10 taps,
delay 3: SI-SDR against the direct path + 50 ms image 10.5 dB before, -4.3 after), so ``R`` is
loaded with ``ridge`` times its mean diagonal (ridge 0.01 / 0.1 / 1 / 10: 9.0 / 10.6 / 12.3 /
12.1 dB; the same on the anechoic image changes its STFT by -21.7 / -23.0 / -26.3 / -33.2 dB
relative error; at 128/32 ms, 3 taps: 8.4 / 10.6 / 12.9 / 12.4 dB; ridge 1 is what
tests/test_teacher_rooms.py checks as dereverberation).

As a teacher's front end, though, the unregularised filter measures best
(bench/teacher_rooms.py, 30 rooms of RT60 0.2-0.6 s, SI-SDRi of the cacgmm teacher's masks on
8 mics, 32/8 ms: no WPE 1.6 dB, ridge 1 2.0, 0.01 2.8, 0 4.0): it whitens each microphone
against the past of all of them, and what remains, onsets dominated by the direct path, carries
the direction. Hence params.yaml's ridge 0; on anechoic mixtures it costs the teacher about
0.6 dB (cacgmm 11.3 -> 10.7). The teacher clusters the filtered STFT; its masks are still
applied to the original (reverberant) mixture, whose images the students learn.
"""

from __future__ import annotations

import numpy as np

from bootsep.errors import BootsepError


def wpe_frames(taps_ms: float, delay_ms: float, hop_ms: float) -> tuple[int, int]:
    """``(taps, delay)`` in frames of an STFT with hop ``hop_ms`` (at least one each)."""
    return max(1, int(round(taps_ms / hop_ms))), max(1, int(round(delay_ms / hop_ms)))


def dereverberate(X: np.ndarray, lengths: np.ndarray, *, taps: int, delay: int,
                  iterations: int, psd_context: int = 0, power_floor_db: float = -40.0,
                  ridge: float = 1.0) -> np.ndarray:
    """WPE of ``X (B, C, T, F)`` complex, each mixture on its first ``lengths[b]`` frames
    (padding stays zero); complex64 of the same shape."""

    X = np.asarray(X)
    if X.ndim != 4 or not np.iscomplexobj(X):
        raise BootsepError(f"WPE needs a complex STFT batch (B, C, T, F); got {X.dtype} "
                           f"{X.shape}")
    if min(taps, delay, iterations) < 1 or psd_context < 0:
        raise BootsepError(f"WPE needs taps, delay and iterations >= 1 and psd_context >= 0; "
                           f"got {taps}, {delay}, {iterations}, {psd_context}")
    out = np.zeros(X.shape, np.complex64)
    for b, t in enumerate(np.asarray(lengths, int)):
        if t <= delay + taps:          # too short to predict anything: left as it is
            out[b, :, :t] = X[b, :, :t]
            continue
        Y = X[b, :, :t].astype(np.complex128).transpose(2, 0, 1)          # (F, C, T)
        if not np.any(Y):
            continue
        Z = wpe_floored(Y, taps, delay, iterations, psd_context, power_floor_db, ridge)
        out[b, :, :t] = Z.transpose(1, 2, 0)
    return out


def wpe_floored(Y: np.ndarray, taps: int, delay: int, iterations: int, psd_context: int,
                power_floor_db: float, ridge: float) -> np.ndarray:
    """nara-wpe's offline WPE (``wpe``, statistics ``full``) of one mixture ``Y (F, C, T)``,
    the power of its weights floored at ``power_floor_db`` below the loudest bin, the weighted
    correlation matrix ``R`` loaded with ``ridge`` times its mean diagonal."""
    from nara_wpe.wpe import build_y_tilde, perform_filter_operation_v5, window_mean

    Y_tilde = build_y_tilde(Y, taps, delay)                          # (F, C * taps, T)
    floor = float(np.max(np.abs(Y) ** 2)) * 10.0 ** (power_floor_db / 10.0)
    Z = Y
    for _ in range(iterations):
        power = np.mean(np.abs(Z) ** 2, axis=-2)                     # (F, T)
        if psd_context > 0:
            power = window_mean(power, (psd_context, psd_context))
        inverse_power = 1.0 / np.maximum(power, floor)
        R, P = weighted_correlations(Y, Y_tilde, inverse_power)   # (F, CD, CD), (F, CD, C)
        load = ridge * np.trace(R, axis1=-2, axis2=-1).real / R.shape[-1]
        G = np.linalg.solve(R + load[:, None, None] * np.eye(R.shape[-1]), P)
        Z = perform_filter_operation_v5(Y=Y, Y_tilde=Y_tilde, filter_matrix=G)
    return Z


def weighted_correlations(Y: np.ndarray, Y_tilde: np.ndarray,
                          inverse_power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WPE's weighted correlations (nara-wpe's ``get_correlations_v6``, tested against it):
    ``R = Ỹ diag(w) Ỹᴴ`` ``(F, CD, CD)`` and ``P = Ỹ diag(w) Yᴴ`` ``(F, CD, C)`` of ``Y (F, C,
    T)``, ``Ỹ (F, CD, T)`` and weights ``w = inverse_power (F, T)``. ``R`` is Hermitian, so each
    frequency's is one BLAS ``zherk`` of ``Ỹ diag(√w)`` (half the multiplications of the general
    product). Measured on the default corpus (8 mics, one thread): the whole WPE about 8 %
    faster than with nara-wpe's products (docs/benchmarks.md)."""
    from scipy.linalg.blas import zherk

    root = np.sqrt(inverse_power)[:, None, :]
    A = Y_tilde * root                                                  # (F, CD, T)
    R = np.empty(A.shape[:2] + (A.shape[1],), np.complex128)
    for f in range(A.shape[0]):         # A[f].T is Fortran-ordered: no copy; trans=2: aᴴa
        upper = zherk(1.0, A[f].T, trans=2, lower=0)       # upper triangle of conj(A Aᴴ)
        R[f] = (np.triu(upper) + np.triu(upper, 1).conj().T).conj()
    P = np.matmul(A, (Y * root).conj().swapaxes(-2, -1))    # Ỹ√w (Y√w)ᴴ: the small side weighted
    return R, P
