"""Weighted prediction error dereverberation (Nakatani et al. 2010; the nara-wpe package) of a
padded batch of multichannel STFTs, before a spatial teacher's fit (issue 23).

WPE predicts each microphone's late reverberation from ``taps`` earlier frames of every
microphone, ``delay`` frames back (the early reflections are kept), and subtracts it; the
prediction filter is re-estimated ``iterations`` times from the time-varying power of the
current estimate. The teacher clusters the dereverberated STFT; its masks are still applied to
the original (reverberant) mixture, whose images the students learn.
"""

from __future__ import annotations

import numpy as np

from bootsep.errors import BootsepError


def wpe_frames(taps_ms: float, delay_ms: float, hop_ms: float) -> tuple[int, int]:
    """``(taps, delay)`` in frames of an STFT with hop ``hop_ms`` (at least one each)."""
    return max(1, int(round(taps_ms / hop_ms))), max(1, int(round(delay_ms / hop_ms)))


def dereverberate(X: np.ndarray, lengths: np.ndarray, *, taps: int, delay: int,
                  iterations: int, psd_context: int = 0) -> np.ndarray:
    """WPE of ``X (B, C, T, F)`` complex, each mixture on its first ``lengths[b]`` frames
    (padding stays zero); complex64 of the same shape."""
    from nara_wpe.wpe import wpe     # import here: only the teachers with dereverb: wpe need it

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
        Z = wpe(Y, taps=taps, delay=delay, iterations=iterations, psd_context=psd_context,
                statistics_mode="full")
        out[b, :, :t] = Z.transpose(1, 2, 0)
    return out
