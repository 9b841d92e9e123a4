"""Anechoic free-field spatialization onto a microphone array (pure numpy/scipy.fft).

The paper's data (§3.2) is the anechoic spatialized wsj0-2mix: sources at random
azimuths around an 8-microphone array, no reverberation. Here each source is a point in
the array's horizontal plane and its image at microphone m is the delayed, attenuated
free-field signal

    x_m(t) = g_m s(t - r_m / c),    g_m = r_0 / r_m,

with r_m the source-microphone distance, r_0 the source-to-array-centre distance and c
the speed of sound. The 1/r law is normalised to gain 1 at the array centre, so levels
set on the dry signals hold at the array. Delays are exact (band-limited) fractional
delays, applied in the frequency domain after enough zero padding that nothing wraps.
Coordinates are metres, with the array centre at the origin, x towards azimuth 0 and
azimuth counted anticlockwise towards +y.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from bootsep.config import ArraySettings
from bootsep.errors import BootsepError


def circular_array(num_mics: int, radius_m: float) -> np.ndarray:
    """Uniform circular array in the z = 0 plane, centred at the origin.

    Microphone m sits at azimuth 360 m / M degrees, so microphone 0 is first, on the +x
    axis. Returns positions ``(M, 3)`` in metres.
    """
    angles = 2.0 * np.pi * np.arange(num_mics) / num_mics
    return np.stack([radius_m * np.cos(angles), radius_m * np.sin(angles),
                     np.zeros(num_mics)], axis=1)


def array_geometry(array: ArraySettings) -> np.ndarray:
    """Microphone positions ``(M, 3)`` (metres) from the validated ``corpus.tts.array`` params
    (``kind: circular`` is the only kind)."""
    return circular_array(array.num_mics, array.radius_m)


def source_position(azimuth_deg: float, distance_m: float, height_m: float = 0.0) -> np.ndarray:
    """Source at ``distance_m`` from the array centre in the horizontal plane; ``(3,)``."""
    a = np.deg2rad(azimuth_deg)
    return np.array([distance_m * np.cos(a), distance_m * np.sin(a), height_m])


def mic_distances(mic_pos: np.ndarray, src_pos: np.ndarray) -> np.ndarray:
    """Distances ``(M,)`` from the source ``(3,)`` to each microphone ``(M, 3)``."""
    return np.linalg.norm(np.asarray(mic_pos) - np.asarray(src_pos)[None, :], axis=1)


def fractional_delay(signal: np.ndarray, delays: np.ndarray, out_len: int | None = None,
                     gains: np.ndarray | None = None) -> np.ndarray:
    """Delay one signal by several (fractional) sample counts at once.

    ``signal`` ``(N,)``; ``delays`` ``(M,)`` in samples, may be negative or fractional;
    ``gains`` ``(M,)`` (default 1). Returns ``(M, out_len)`` (default ``out_len = N``) with
    row m = gains[m] * signal(n - delays[m]) evaluated by band-limited interpolation:
    rfft, multiplication by exp(-j 2 pi f delay), irfft. The FFT length covers the signal,
    the output and twice the largest delay, then doubles, so the circular shift never
    wraps signal onto itself and sinc tails that wrap are at least N samples away.
    Integer delays reproduce shifted samples exactly (to float rounding).
    """
    x = np.asarray(signal, dtype=np.float64)
    d = np.atleast_1d(np.asarray(delays, dtype=np.float64))
    n = x.shape[-1]
    out_len = n if out_len is None else int(out_len)
    span = int(np.ceil(np.max(np.abs(d)))) if d.size else 0
    nfft = scipy.fft.next_fast_len(2 * (max(n, out_len) + 2 * span + 1), real=True)
    spec = scipy.fft.rfft(x, nfft)
    k = np.arange(spec.shape[-1])
    phase = np.exp(-2j * np.pi * d[:, None] * k[None, :] / nfft)
    y = scipy.fft.irfft(spec[None, :] * phase, nfft, axis=-1)[:, :out_len]
    if gains is not None:
        y *= np.asarray(gains, dtype=np.float64)[:, None]
    return y


def free_field_images(signal: np.ndarray, mic_pos: np.ndarray, src_pos: np.ndarray,
                      sample_rate: float, speed_of_sound: float,
                      out_len: int | None = None) -> np.ndarray:
    """Anechoic image ``(M, out_len)`` of a dry source ``(N,)`` at ``src_pos`` ``(3,)``.

    Row m is ``(r_0 / r_m) s(t - r_m / c)`` with the full propagation delay r_m / c,
    r_0 the distance to the array centre (mean microphone position): the level is that of
    the dry signal at the centre. ``out_len`` defaults to N (the delayed tail is cut).
    """
    mic_pos = np.asarray(mic_pos, dtype=np.float64)
    src_pos = np.asarray(src_pos, dtype=np.float64)
    r = mic_distances(mic_pos, src_pos)
    r0 = float(np.linalg.norm(src_pos - mic_pos.mean(axis=0)))
    if np.any(r <= 0) or r0 <= 0:
        raise BootsepError("a source coincides with a microphone or the array centre")
    return fractional_delay(signal, r / speed_of_sound * sample_rate, out_len, gains=r0 / r)
