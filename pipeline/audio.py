"""Audio file reading and writing with checks that name the file and the problem."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from bootsep.pipeline.atomic import atomic_path
from bootsep.pipeline.errors import BootsepError

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


def read_audio(path: str | os.PathLike, min_channels: int = 1) -> tuple[np.ndarray, int]:
    """Read ``(channels, samples)`` float32 audio and its sample rate.

    Raises :class:`BootsepError` for a missing, unreadable or empty file, fewer than
    ``min_channels`` channels, or non-finite samples.
    """
    path = Path(path)
    info = audio_info(path)
    if info.channels < min_channels:
        raise BootsepError(f"has {info.channels} channel(s), need at least {min_channels}", path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise BootsepError(f"unreadable audio ({_short(exc)})", path) from None
    if data.shape[0] == 0:
        raise BootsepError("empty audio file (0 samples)", path)
    if not np.isfinite(data).all():
        raise BootsepError("contains NaN or infinite samples", path)
    return np.ascontiguousarray(data.T), int(rate)


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
