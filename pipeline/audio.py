"""Audio file reading and writing with checks that name the file and the problem."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from bootsep.atomic import atomic_path
from bootsep.errors import BootsepError

AUDIO_SUFFIXES = (".wav", ".flac")


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """Header of an audio file; unreadable or empty files are a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise BootsepError("file not found", path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for broken files
        raise BootsepError(f"unreadable audio ({_short(exc)})", path) from None
    if info.frames == 0:
        raise BootsepError("empty audio file (0 samples)", path)
    return info


def read_audio(path: str | os.PathLike, min_channels: int = 1,
               channels: Sequence[int] | None = None) -> tuple[np.ndarray, int]:
    """Read ``(channels, samples)`` float32 audio and its sample rate.

    ``channels`` selects (and orders) channels; only those are converted to float, so reading
    channel 0 of an 8-channel 16-bit file costs about one channel's conversion (the file is
    still decoded whole). The values equal soundfile's float32 reading of the whole file.
    Raises :class:`BootsepError` for a missing, unreadable or empty file, fewer than
    ``min_channels`` channels, a channel the file lacks, or non-finite samples.
    """
    path = Path(path)
    info = audio_info(path)
    if info.channels < min_channels:
        raise BootsepError(f"has {info.channels} channel(s), need at least {min_channels}", path)
    pick = list(range(info.channels)) if channels is None else [int(c) for c in channels]
    if any(not 0 <= c < info.channels for c in pick):
        raise BootsepError(f"has {info.channels} channel(s), channel(s) {pick} requested", path)
    pcm16 = info.subtype == "PCM_16"
    try:
        data, rate = sf.read(str(path), dtype="int16" if pcm16 else "float32", always_2d=True)
    except Exception as exc:
        raise BootsepError(f"unreadable audio ({_short(exc)})", path) from None
    if data.shape[0] == 0:
        raise BootsepError("empty audio file (0 samples)", path)
    if pcm16:                                 # exactly soundfile's int16 -> float32 scaling
        audio = data.T[pick].astype(np.float32) * np.float32(1.0 / 32768.0)
    else:
        audio = np.ascontiguousarray(data.T[pick])
        if not np.isfinite(audio).all():
            raise BootsepError("contains NaN or infinite samples", path)
    return audio, int(rate)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                subtype: str | None = None) -> None:
    """Write ``(channels, samples)`` or ``(samples,)`` audio atomically (temp name, rename)."""
    path = Path(path)
    audio = np.asarray(audio)
    data = audio.T if audio.ndim == 2 else audio
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt)


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def load_at_rate(path: Path, rate: int, min_channels: int = 1,
                 channels: list[int] | None = None) -> np.ndarray:
    """Read audio ``(C, L)`` (the ``channels`` chosen) and resample it to ``rate`` when needed."""
    audio, sr = read_audio(path, min_channels=min_channels, channels=channels)
    if sr != rate:
        g = np.gcd(sr, rate)
        audio = resample_poly(audio, rate // g, sr // g, axis=-1).astype(np.float32)
    return audio
