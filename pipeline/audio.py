"""Audio file reading and writing with checks that name the file and the problem.

One integer PCM convention, soundfile's for reading: a ``b``-bit level ``q`` is the sample
``q / 2**(b - 1)`` (16 bits: ``q / 32768``, :data:`PCM16_SCALE`). Float samples written as
16-bit PCM are quantised here, to the nearest level ``round(x * 32768)`` clipped to
``[-32768, 32767]`` (i.e. ``x`` clipped to ``[-1, 1 - 2**-15]``), so reading them back gives
the nearest multiple of ``2**-15`` (libsndfile's own conversion varies with its version;
1.2.2 floors ``x * 32768``).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from bootsep.atomic import atomic_path
from bootsep.errors import BootsepError, exception_text

AUDIO_SUFFIXES = (".wav", ".flac")
PCM16_SCALE = 32768.0          # 2**15: 16-bit PCM level q is the sample q / 2**15


def audio_info(path: str | os.PathLike, allow_empty: bool = False) -> sf._SoundFileInfo:
    """Header of an audio file; unreadable or (unless ``allow_empty``) empty files are a
    one-line error."""
    path = Path(path)
    if not path.is_file():
        raise BootsepError("file not found", path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for broken files
        raise BootsepError(f"unreadable audio ({exception_text(exc)})", path) from exc
    if info.frames == 0 and not allow_empty:
        raise BootsepError("empty audio file (0 samples)", path)
    return info


def read_audio(path: str | os.PathLike, min_channels: int = 1,
               channels: Sequence[int] | None = None, start: int = 0,
               frames: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``(channels, samples)`` float32 audio and its sample rate.

    ``channels`` selects (and orders) channels; only those are converted to float, so reading
    channel 0 of an 8-channel 16-bit file costs about one channel's conversion. ``start`` and
    ``frames`` read the segment of ``frames`` samples from sample ``start`` (None: to the end;
    a segment of a long recording, :mod:`bootsep.pipeline.corpus.folder`), decoding only that
    part. The values equal soundfile's float32 reading of the whole file, sliced.
    Raises :class:`BootsepError` for a missing, unreadable or empty file, fewer than
    ``min_channels`` channels, a channel the file lacks, a segment past the file's end, or
    non-finite samples.
    """
    path = Path(path)
    info = audio_info(path)
    if info.channels < min_channels:
        raise BootsepError(f"has {info.channels} channel(s), need at least {min_channels}", path)
    pick = list(range(info.channels)) if channels is None else [int(c) for c in channels]
    if any(not 0 <= c < info.channels for c in pick):
        raise BootsepError(f"has {info.channels} channel(s), channel(s) {pick} requested", path)
    segment = {} if start == 0 and frames is None else _segment(path, info.frames, start, frames)
    pcm16 = info.subtype == "PCM_16"
    try:
        data, rate = sf.read(str(path), dtype="int16" if pcm16 else "float32", always_2d=True,
                             **segment)
    except Exception as exc:
        raise BootsepError(f"unreadable audio ({exception_text(exc)})", path) from exc
    if data.shape[0] == 0:
        raise BootsepError("empty audio file (0 samples)", path)
    if segment and data.shape[0] != segment["stop"] - segment["start"]:
        raise BootsepError(f"ends after {segment['start'] + data.shape[0]} samples, its header "
                           f"says {info.frames}", path)
    if pcm16:                                 # exactly soundfile's int16 -> float32 scaling
        audio = pcm_to_float(data.T[pick])
    else:
        audio = np.ascontiguousarray(data.T[pick])
        if not np.isfinite(audio).all():
            raise BootsepError("contains NaN or infinite samples", path)
    return audio, int(rate)


def _segment(path: Path, length: int, start: int, frames: int | None) -> dict:
    """soundfile's ``start``/``stop`` of the segment ``frames`` samples from ``start`` (None:
    to the end) of a file of ``length`` samples; a segment outside it is an error."""
    start = int(start)
    stop = length if frames is None else start + int(frames)
    if start < 0 or stop <= start or stop > length:
        raise BootsepError(f"has {length} samples; samples {start} to {stop} were asked for "
                           "(the manifest's start and num_samples)", path)
    return {"start": start, "stop": stop}


def pcm_to_float(pcm: np.ndarray) -> np.ndarray:
    """Signed integer PCM -> float32 samples as soundfile reads them: ``q / 2**(bits - 1)``."""
    pcm = np.asarray(pcm)
    if not np.issubdtype(pcm.dtype, np.signedinteger):
        raise BootsepError(f"integer audio must be signed PCM (int16, int32), got {pcm.dtype}")
    return pcm.astype(np.float32) * np.float32(1.0 / -float(np.iinfo(pcm.dtype).min))


def pcm16_levels(x: np.ndarray) -> np.ndarray:
    """Float samples -> their nearest 16-bit PCM levels ``round(x * 2**15)`` as int32, not yet
    clipped to the int16 range (callers that must not clip check it)."""
    return np.round(np.asarray(x) * PCM16_SCALE).astype(np.int32)


def float_to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples -> int16 PCM: the nearest level, clipped to ``[-32768, 32767]``."""
    return np.clip(pcm16_levels(x), -32768, 32767).astype(np.int16)


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                subtype: str | None = None) -> None:
    """Write ``(channels, samples)`` or ``(samples,)`` audio atomically (temp name, rename).

    ``subtype`` None is the format's default (16-bit PCM for WAV and FLAC); float samples
    written as 16-bit PCM go through :func:`float_to_pcm16`."""
    path = Path(path)
    audio = np.asarray(audio)
    data = audio.T if audio.ndim == 2 else audio
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    if data.dtype.kind == "f" and (subtype or sf.default_subtype(fmt)) == "PCM_16":
        data = float_to_pcm16(data)
    buf = io.BytesIO()      # encoded in memory: libsndfile reports a full disk only as
    sf.write(buf, data, sample_rate, subtype=subtype, format=fmt)   # "System error."
    try:                    # Python's file I/O: an OSError with its errno, naming the file
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
    except OSError as exc:
        if exc.filename is None:
            exc.filename = os.fspath(path)
        raise



def load_at_rate(path: Path, rate: int, min_channels: int = 1,
                 channels: list[int] | None = None, start: int = 0,
                 frames: int | None = None) -> np.ndarray:
    """Read audio ``(C, L)`` (the ``channels`` chosen; the segment ``start``, ``frames`` of
    :func:`read_audio`) and resample it to ``rate`` when needed."""
    audio, sr = read_audio(path, min_channels=min_channels, channels=channels, start=start,
                           frames=frames)
    return resample(audio, sr, rate)


def load_references(paths: Sequence[Path], rate: int, length: int, start: int = 0,
                    frames: int | None = None) -> np.ndarray:
    """Channel 0 of each source image file at ``rate`` (the segment ``start``, ``frames`` of
    each): ``(K, length)`` float32; an image of another length than the mixture's ``length``
    samples is an error naming it."""
    refs = []
    for path in paths:
        ref = load_at_rate(path, rate, channels=[0], start=start, frames=frames)[0]
        if ref.shape[-1] != length:
            raise BootsepError(f"source image has {ref.shape[-1]} samples at {rate} Hz, the "
                               f"mixture {length}", path)
        refs.append(ref)
    return np.stack(refs)


def resample(x: np.ndarray, rate_in: int, rate_out: int, dtype=np.float32) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy's ``resample_poly`` at the reduced
    ratio ``rate_out / rate_in``), as ``dtype``; the input unchanged when the rates match."""
    if rate_in == rate_out:
        return np.asarray(x, dtype=dtype)
    g = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g, axis=-1).astype(dtype, copy=False)
