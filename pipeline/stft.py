"""Short-time Fourier transform, batched over leading dims, with exact inverse.

One :class:`StftConfig` describes the transform; it is written as attributes into every
shard and checked when a shard is read, so a model trained at one STFT refuses features
of another.

Framing: the signal is padded with ``win_length - hop_length`` zeros in front and at least
as many at the end (rounded up to a whole number of hops), so every sample is covered by
the same number of frames and :func:`istft` (weighted overlap-add) reconstructs the input
to float precision, edges included.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window


@dataclass(frozen=True)
class StftConfig:
    """STFT parameters; window and hop in samples at ``sample_rate``."""

    sample_rate: int = 8000
    win_length: int = 256       # 32 ms at 8 kHz (paper §3.2)
    hop_length: int = 64        # 8 ms at 8 kHz
    window: str = "hann"

    @property
    def num_freq(self) -> int:
        return self.win_length // 2 + 1

    def as_attrs(self) -> dict:
        return {f"stft_{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_attrs(cls, attrs) -> StftConfig:
        return cls(**{k: plain_attr(attrs[f"stft_{k}"]) for k in cls.__dataclass_fields__})

    def num_frames(self, num_samples: int | np.ndarray) -> int | np.ndarray:
        """Frames produced for a signal of ``num_samples`` samples."""
        padded = np.asarray(num_samples) + 2 * (self.win_length - self.hop_length)
        frames = -(-(padded - self.win_length) // self.hop_length) + 1
        return frames if isinstance(num_samples, np.ndarray) else int(frames)

    def analysis_window(self) -> np.ndarray:
        return get_window(self.window, self.win_length, fftbins=True).astype(np.float32)


def stft(x: np.ndarray, cfg: StftConfig) -> np.ndarray:
    """STFT of real signals ``x (..., L)`` → complex64 ``(..., T, F)``, T = cfg.num_frames(L)."""
    x = np.asarray(x, dtype=np.float32)
    length = x.shape[-1]
    frames = cfg.num_frames(length)
    total = (frames - 1) * cfg.hop_length + cfg.win_length
    front = cfg.win_length - cfg.hop_length
    pad = [(0, 0)] * (x.ndim - 1) + [(front, total - front - length)]
    xp = np.pad(x, pad)
    segments = sliding_window_view(xp, cfg.win_length, axis=-1)[..., ::cfg.hop_length, :]
    # scipy.fft keeps float32 in single precision (5x faster than numpy's float64 FFT here)
    spec = scipy.fft.rfft(segments * cfg.analysis_window(), axis=-1)
    return spec.astype(np.complex64, copy=False)


def istft(spec: np.ndarray, cfg: StftConfig, length: int) -> np.ndarray:
    """Inverse of :func:`stft`: ``(..., T, F)`` → float32 ``(..., length)`` by weighted
    overlap-add."""
    spec = np.asarray(spec)
    frames = spec.shape[-2]
    win = cfg.analysis_window().astype(np.float64)
    segs = scipy.fft.irfft(spec, n=cfg.win_length, axis=-1) * win    # (..., T, W)
    hop, W = cfg.hop_length, cfg.win_length
    r = -(-W // hop)                       # frames k, k + r, k + 2r, ... never overlap
    block = r * hop                        # each one's span, zero-padded from W to r * hop
    total = (frames - 1) * hop + W
    out = np.zeros(spec.shape[:-2] + (total + block,), dtype=np.float64)
    norm = np.zeros(total + block, dtype=np.float64)
    segs = np.pad(segs, [(0, 0)] * (segs.ndim - 1) + [(0, block - W)])
    win2 = np.pad(win ** 2, (0, block - W))
    for k in range(min(r, frames)):
        # overlap-add of one frame in r as a reshaped slice (no index arrays)
        n = len(range(k, frames, r))
        start = k * hop
        span, weight = out[..., start:start + n * block], norm[start:start + n * block]
        span.shape, weight.shape = out.shape[:-1] + (n, block), (n, block)   # views (or raise)
        span += segs[..., k::r, :]
        weight += win2
    front = W - hop
    norm = np.where(norm[:total] > 1e-8, norm[:total], 1.0)
    return (out[..., :total] / norm)[..., front:front + length].astype(np.float32)


def plain_attr(value):
    """An HDF5 attribute value as a plain Python value (bytes -> str, numpy scalar -> item)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
