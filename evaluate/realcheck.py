"""Real recordings as a check (issue 22): human speech mixed two at a time as the corpus mixes.

The recordings are never trained on. They come in sets (``realcheck.sets``; by default Debian's
``pocketsphinx-testdata``, a few read sentences, digits and commands of several speakers, and
``asterisk-core-sounds-*-wav``, telephone prompts of four professional speakers in five
languages), each mixed within itself. In a set each recording lies in a group, the speaker:
the capturing group of the set's ``group`` pattern in its path, or by default its first folder
below the root, or its own name for a file at the top; only recordings of different groups are
mixed.

A recording is read (wav/flac, or headerless 16-bit little-endian mono ``.raw`` at a given
rate), resampled to the STFT rate, trimmed and set to the corpus's active-speech level
(``trim_silence``, ``active_rms`` of :mod:`bootsep.pipeline.corpus.tts`). A mixture draws, from
``default_rng([seed, STREAM_MIX, i, j])`` of its two recordings ``i < j``, what the corpus draws
per mixture (``plan_mixture`` of :mod:`bootsep.pipeline.corpus.tts_corpus`): which source is
first, the relative level L (first +L/2 dB, second -L/2 dB), azimuths and distances; then 'min'
mode (both cut to the shorter and to ``max_seconds``), free-field images on the array
(:mod:`bootsep.pipeline.corpus.spatialize`), scaled to the corpus's peak and quantised to 16 bits
(its ``pcm16_images``), so the mixture is the exact sum of its images; the stereo pair's second
channel is drawn from ``stft.pair_channels``.

Scoring: each model separates channel 0 (embeddings + K-means, as the evaluate stage), each
spatial teacher its pair (or every microphone, ``channels: all``, with the array's geometry),
and SI-SDR/SIR/SAR and SI-SDRi are measured against the images at channel 0.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bootsep.errors import BootsepError, exception_text
from bootsep.evaluate.estimates import teacher_approach
from bootsep.evaluate.inference import KMeansMasks, apply_masks, model_masks
from bootsep.evaluate.metrics import separation_metrics
from bootsep.pipeline.audio import PCM16_SCALE, audio_info, read_audio, resample
from bootsep.pipeline.corpus.tts import TARGET_ACTIVE_RMS, active_rms, trim_silence
from bootsep.pipeline.corpus.tts_corpus import draw_geometry, pcm16_images, source_images
from bootsep.pipeline.features import log_magnitude_db
from bootsep.pipeline.jobs.spatial_shard import fit_teacher, refine_frames
from bootsep.pipeline.stft import StftConfig, stft
from bootsep.pipeline.teachers.spec import Teacher
from bootsep.train.model import DeepClusteringBLSTM

RAW_SUFFIX = ".raw"
SUFFIXES = (".wav", ".flac", RAW_SUFFIX)
STREAM_CHOICE, STREAM_MIX = 0, 1            # default_rng([seed, STREAM, ...])
METRICS = ("si_sdr", "si_sir", "si_sar", "si_sdri")


@dataclass(frozen=True)
class Recording:
    """A recording at the STFT rate: trimmed, at the corpus's active level; ``audio (N,)``."""

    id: str                   # its path below the root, without suffix
    group: str                # speaker proxy
    audio: np.ndarray

    @property
    def num_samples(self) -> int:
        return int(self.audio.shape[-1])


@dataclass(frozen=True)
class MixSettings:
    """The corpus's mixing draws (``corpus.tts``) and the stereo pair's channels (``stft``)."""

    relative_level_db: tuple[float, float]
    min_azimuth_separation_deg: float
    distance_m: tuple[float, float]
    speed_of_sound: float
    peak: float
    max_seconds: float
    pair_channels: tuple[int, ...]

    @classmethod
    def from_params(cls, tts, pair_channels) -> MixSettings:
        """The settings of a ``corpus.tts`` section and ``stft.pair_channels``."""
        return cls(tuple(tts.relative_level_db), tts.min_azimuth_separation_deg,
                   tuple(tts.distance_m), tts.speed_of_sound, tts.peak, tts.max_seconds,
                   tuple(pair_channels))


@dataclass(frozen=True)
class RealMixture:
    """Two recordings on the array: ``images (2, M, n)`` float32 (16-bit levels / 2**15)."""

    id: str
    sources: tuple[str, str]
    groups: tuple[str, str]
    relative_level_db: float
    azimuths_deg: tuple[float, float]
    distances_m: tuple[float, float]
    pair_channel: int
    images: np.ndarray

    @property
    def mixture(self) -> np.ndarray:
        """``(M, n)``: the sum of the images (exact: they are 16-bit levels)."""
        return self.images.sum(axis=0)

    def record(self) -> dict:
        return {"id": self.id, "sources": list(self.sources), "groups": list(self.groups),
                "relative_level_db": self.relative_level_db,
                "azimuths_deg": list(self.azimuths_deg), "distances_m": list(self.distances_m),
                "pair_channel": self.pair_channel, "num_samples": int(self.images.shape[-1])}


# ------------------------------------------------------------------------- recordings

def set_seed(seed: int, name: str) -> int:
    """The seed of the set named ``name``: its draws independent of every other set's and of
    the sets' order."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def list_recordings(root: str | os.PathLike,
                    group: str | None = None) -> list[tuple[str, str, Path]]:
    """``(id, group, path)`` of every wav/flac/raw file below ``root``, sorted by id. The group
    is the capturing group of ``group`` searched in the path below the root (files it does not
    match are left out), or without a pattern the first folder, or the name of a file at the
    top."""
    root = Path(root)
    if not root.is_dir():
        raise BootsepError("recordings folder not found", root)
    pattern = re.compile(group) if group is not None else None
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(root).with_suffix("")
        if pattern is None:
            name = rel.parts[0] if len(rel.parts) > 1 else rel.name
        else:
            match = pattern.search(rel.as_posix())
            if match is None or not match.group(1):
                continue
            name = match.group(1)
        out.append((rel.as_posix(), name, path))
    if not out:
        raise BootsepError(f"no recordings ({', '.join(SUFFIXES)})"
                           + ("" if group is None else f" whose path matches {group!r}")
                           + " in this folder", root)
    return out


def read_recording(path: str | os.PathLike, raw_rate: int) -> tuple[np.ndarray, int]:
    """Mono float32 samples ``(N,)`` (channel 0 of a multichannel file) and their rate; a
    ``.raw`` file is headerless 16-bit little-endian mono at ``raw_rate``."""
    path = Path(path)
    if path.suffix.lower() != RAW_SUFFIX:
        audio, rate = read_audio(path)
        return audio[0], rate
    if not path.is_file():
        raise BootsepError("file not found", path)
    size = path.stat().st_size
    if size == 0 or size % 2:
        raise BootsepError(f"not 16-bit PCM: {size} bytes (an empty or odd size)", path)
    try:
        data, _ = sf.read(str(path), samplerate=raw_rate, channels=1, subtype="PCM_16",
                          endian="LITTLE", format="RAW", dtype="int16")
    except Exception as exc:  # soundfile raises several types for broken files
        raise BootsepError(f"unreadable raw audio ({exception_text(exc)})", path) from exc
    return data.astype(np.float32) / np.float32(PCM16_SCALE), int(raw_rate)


def load_recordings(root: str | os.PathLike, rate: int, raw_rate: int, min_seconds: float,
                    group: str | None = None) -> tuple[list[Recording], list[str]]:
    """The recordings below ``root`` (grouped by ``group``, :func:`list_recordings`) at
    ``rate``, trimmed and at the corpus's active level, and the ids of those left out for being
    shorter than ``min_seconds`` after trimming (an empty wav/flac file among them)."""
    kept, short = [], []
    for rid, group_name, path in list_recordings(root, group):
        if path.suffix.lower() != RAW_SUFFIX and audio_info(path, allow_empty=True).frames == 0:
            short.append(rid)       # an empty file of a package (asterisk's ru is.wav): 0 s long
            continue
        x, sr = read_recording(path, raw_rate)
        x = trim_silence(resample(x, sr, rate, np.float64), rate)
        level = active_rms(x, rate)
        if level <= 0:
            raise BootsepError("silent recording (no sample above zero)", path)
        if len(x) < min_seconds * rate:
            short.append(rid)
            continue
        kept.append(Recording(rid, group_name, x * (TARGET_ACTIVE_RMS / level)))
    return kept, short


# ------------------------------------------------------------------------- mixtures

def cross_group_pairs(recordings: Sequence[Recording]) -> list[tuple[int, int]]:
    """Every ``(i, j)``, ``i < j``, of recordings of different groups (in row order)."""
    groups = np.array([r.group for r in recordings], dtype=object)
    i, j = np.triu_indices(len(recordings), k=1)
    keep = groups[i] != groups[j]
    return list(zip(i[keep].tolist(), j[keep].tolist()))


def choose_pairs(pairs: Sequence[tuple[int, int]], count: int | None,
                 seed: int) -> list[tuple[int, int]]:
    """``count`` of ``pairs`` drawn without replacement by the seed, in their order (all of
    them when ``count`` is None or not smaller)."""
    if count is None or count >= len(pairs):
        return list(pairs)
    rng = np.random.default_rng([seed, STREAM_CHOICE])
    return [pairs[k] for k in sorted(rng.choice(len(pairs), count, replace=False))]


def draw_set(name: str, root: str | os.PathLike, group: str | None, count: int | None, *,
             seed: int, rate: int, raw_rate: int,
             min_seconds: float) -> tuple[list[Recording], list[str], int, list[tuple[int, int]]]:
    """A set's recordings (:func:`load_recordings`), those too short, its seed
    (:func:`set_seed` of ``seed`` and ``name``) and its ``count`` drawn cross-group pairs
    (:func:`choose_pairs`; all of them when None)."""
    recordings, short = load_recordings(root, rate, raw_rate, min_seconds, group)
    set_rng_seed = set_seed(seed, name)
    pairs = choose_pairs(cross_group_pairs(recordings), count, set_rng_seed)
    return recordings, short, set_rng_seed, pairs


def mix_pair(recordings: Sequence[Recording], i: int, j: int, mics: np.ndarray, rate: int,
             s: MixSettings, seed: int) -> RealMixture:
    """Recordings ``i`` and ``j`` mixed on the array ``mics (M, 3)`` as the corpus mixes two
    utterances (draws as in ``tts_corpus.plan_mixture``, levels and scaling as its
    ``render_mixture``), from ``default_rng([seed, STREAM_MIX, i, j])``."""
    rng = np.random.default_rng([seed, STREAM_MIX, i, j])
    first, second = (recordings[i], recordings[j]) if rng.random() < 0.5 \
        else (recordings[j], recordings[i])
    level, (az1, az2), (d1, d2) = draw_geometry(rng, s)
    pair_channel = int(rng.choice(s.pair_channels))
    n = min(first.num_samples, second.num_samples, int(round(s.max_seconds * rate)))
    mid = f"{first.id}+{second.id}"
    images = source_images([first.audio[:n], second.audio[:n]],
                           [f"recording {first.id}", f"recording {second.id}"], level,
                           (az1, az2), (d1, d2), mics, rate, s.speed_of_sound)
    q, _, _ = pcm16_images(images, s.peak, mid)
    return RealMixture(mid, (first.id, second.id), (first.group, second.group), level,
                       (az1, az2), (d1, d2), pair_channel,
                       (np.stack(q) / PCM16_SCALE).astype(np.float32))


# ------------------------------------------------------------------------- scoring

def model_estimate(model: DeepClusteringBLSTM, mixture: np.ndarray, cfg: StftConfig, *,
                   kmeans: KMeansMasks, device: torch.device | str = "cpu",
                   num_sources: int = 2) -> np.ndarray:
    """A model's sources ``(K, L)`` from channel 0 ``(L,)`` (DC embeddings + K-means, masks as
    ``kmeans`` makes them)."""
    spec = stft(mixture, cfg)
    masks = model_masks(model, [log_magnitude_db(spec)], num_sources, kmeans, device=device)[0]
    return apply_masks(spec, masks, cfg, mixture.shape[-1])


def teacher_estimate(teacher: Teacher, mix: RealMixture, cfg: StftConfig, mics: np.ndarray,
                     speed_of_sound: float) -> np.ndarray:
    """A spatial teacher's sources ``(K, L)``: its posteriors (eq. 3) on channel 0's STFT, fitted
    on channel 0 and the pair channel (``pair``) or every microphone (``all``), refined by its
    beamformers as the spatial stage does (``beamform: mvdr``)."""
    channels = [0, mix.pair_channel] if teacher.channels == "pair" \
        else list(range(mix.images.shape[1]))
    spec = stft(mix.mixture[channels], cfg)                       # (C, T, F)
    X = spec[None]
    lengths = np.array([spec.shape[1]])
    frames, _, _ = fit_teacher(X, log_magnitude_db(spec[:1]), lengths, teacher, cfg,
                               (mics, speed_of_sound))
    if teacher.beamform != "none":
        refine_frames(frames, mix.mixture[channels][None], np.array([mix.mixture.shape[-1]]),
                      lengths, teacher, cfg)
    masks = np.moveaxis(np.asarray(frames["posteriors"][0], np.float32), -1, 0)
    return apply_masks(spec[0], masks, cfg, mix.images.shape[-1])


def score(estimates: np.ndarray, mix: RealMixture) -> dict[str, float]:
    """Mean over the sources of SI-SDR/SIR/SAR and SI-SDRi against the images at channel 0."""
    m = separation_metrics(estimates, mix.images[:, 0], mix.mixture[0])
    return {k: float(np.mean(m[k])) for k in METRICS}


def score_mixture(mix: RealMixture, models: Mapping[str, DeepClusteringBLSTM],
                  teachers: Sequence[Teacher], cfg: StftConfig, mics: np.ndarray,
                  speed_of_sound: float, *, kmeans: KMeansMasks,
                  device: torch.device | str = "cpu") -> dict[str, dict[str, float]]:
    """``{approach: metrics}`` of every model (on channel 0) and teacher on one mixture."""
    out = {name: score(model_estimate(model, mix.mixture[0], cfg, kmeans=kmeans,
                                      device=device), mix)
           for name, model in models.items()}
    for t in teachers:
        out[teacher_approach(t.name)] = score(teacher_estimate(t, mix, cfg, mics,
                                                               speed_of_sound), mix)
    return out
