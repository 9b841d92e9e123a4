"""Long recordings in overlapping blocks, with bounded memory and a consistent source order.

A recording of ``L`` samples is cut into blocks of ``block`` samples that overlap by
``overlap`` samples (the last block takes the remainder, up to 1.5 blocks, so that no block
is a sliver). Each block is separated on its own; the next block's sources are put in the
order of the previous block's by the permutation that maximises the summed correlation of
their estimates over the overlap (Hungarian assignment), and the two are cross-faded there
with a raised-cosine ramp (weights summing to one). Only the overlap of the previous block
is kept between blocks, so memory does not grow with the length of the recording.

:func:`run_blocks` is the driver (reader, separator and writer are callables);
:func:`separate_array` runs it on an array in memory, :func:`separate_file` on an audio file
read block by block with soundfile and written to temporary files renamed at the end.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.optimize import linear_sum_assignment

from bootsep.atomic import atomic_path
from bootsep.errors import BootsepError, exception_text
from bootsep.pipeline.audio import audio_info
from bootsep.progress import Progress

SILENCE_PEAK = 1e-6          # peak below this (-120 dBFS) counts as silence
SCAN_FRAMES = 1 << 18        # frames per read when scanning a file


@dataclass
class BlockOutput:
    """What the separator returns for one block: sources ``(K, n)`` and what it did."""

    sources: np.ndarray
    info: dict = field(default_factory=dict)


def plan_blocks(length: int, block: int | None, overlap: int) -> list[tuple[int, int]]:
    """Half-open sample ranges ``[start, end)`` of the blocks covering ``length`` samples.

    ``block=None`` (or ``block >= length``) gives one block. Consecutive blocks overlap by
    exactly ``overlap``; the last one is extended to the end (at most 1.5 ``block`` long).
    """
    if length <= 0:
        raise BootsepError("cannot split an empty signal into blocks")
    if block is None or block >= length:
        return [(0, length)]
    if overlap < 1 or 2 * overlap > block:
        raise BootsepError(f"block overlap must be between 1 sample and half a block "
                           f"(block {block}, overlap {overlap} samples)")
    step = block - overlap
    count = max(1, math.ceil((length - overlap) / step))
    if count > 1 and length - (count - 1) * step < block // 2:
        count -= 1                                   # fold a short remainder into the last block
    starts = [i * step for i in range(count)]
    ends = [s + block for s in starts[:-1]] + [length]
    return list(zip(starts, ends))


def align_permutation(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Order of ``candidate``'s sources that best matches ``reference``'s, both ``(K, n)``.

    Returns ``perm`` with ``candidate[perm]`` aligned to ``reference``: the assignment that
    maximises the summed normalised correlation. Silent overlaps give the identity.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    norms = np.sqrt((ref ** 2).sum(-1))[:, None] * np.sqrt((cand ** 2).sum(-1))[None, :]
    corr = (ref @ cand.T) / np.maximum(norms, 1e-20)
    rows, cols = linear_sum_assignment(-corr)
    return cols[np.argsort(rows)]


def crossfade_ramp(n: int) -> np.ndarray:
    """Raised-cosine fade-in weights ``(n,)`` from ~0 to ~1 (the fade-out is ``1 - ramp``)."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)


def run_blocks(read: Callable[[int, int], np.ndarray], length: int,
               process: Callable[[np.ndarray], BlockOutput],
               write: Callable[[np.ndarray], None], *, block: int | None, overlap: int,
               progress: Progress | None = None) -> list[dict]:
    """Separate ``length`` samples block by block; returns one info dict per block.

    ``read(start, end)`` gives the input block ``(C, end - start)``; ``process`` separates
    it; ``write`` receives the finished output ``(K, m)`` chunks in order, together covering
    ``[0, length)`` exactly once. Each info dict is the block's own plus ``start``, ``end``
    (samples) and ``permutation`` (the reordering applied to match the previous block).
    """
    plan = plan_blocks(length, block, overlap)
    tail: np.ndarray | None = None
    infos = []
    for i, (start, end) in enumerate(plan):
        out = process(read(start, end))
        sources = np.asarray(out.sources, dtype=np.float32)
        if sources.ndim != 2 or sources.shape[1] != end - start:
            raise BootsepError(f"block separator returned shape {sources.shape}, "
                               f"expected (K, {end - start})")
        perm = np.arange(sources.shape[0])
        if tail is not None:
            if tail.shape[0] != sources.shape[0]:
                raise BootsepError("blocks returned different numbers of sources")
            ov = tail.shape[1]
            perm = align_permutation(tail, sources[:, :ov])
            sources = sources[perm]
            ramp = crossfade_ramp(ov)
            sources[:, :ov] = tail * (1.0 - ramp) + sources[:, :ov] * ramp
        done = (plan[i + 1][0] if i + 1 < len(plan) else end) - start
        write(sources[:, :done])
        tail = sources[:, done:].copy() if i + 1 < len(plan) else None
        infos.append({**out.info, "start": start, "end": end,
                      "permutation": [int(p) for p in perm]})
        if progress is not None:
            progress.update(1, **{k: v for k, v in out.info.items() if k == "choice"})
    return infos


def block_samples(seconds: float | None, rate: int) -> int | None:
    """Seconds -> samples at ``rate`` (``None`` stays ``None``: one block)."""
    return None if seconds is None else max(1, int(round(seconds * rate)))


def check_block_seconds(block_seconds: float | None, overlap_seconds: float) -> None:
    if block_seconds is not None and not block_seconds > 0:
        raise BootsepError(f"block length must be positive, got {block_seconds} s")
    if not overlap_seconds > 0:
        raise BootsepError(f"block overlap must be positive, got {overlap_seconds} s")
    if block_seconds is not None and 2 * overlap_seconds > block_seconds:
        raise BootsepError(f"block overlap ({overlap_seconds} s) must be at most half the block "
                           f"length ({block_seconds} s)")


def separate_array(audio: np.ndarray, rate: int, process: Callable[[np.ndarray], BlockOutput],
                   num_sources: int, *, block_seconds: float | None, overlap_seconds: float,
                   progress: Progress | None = None) -> tuple[np.ndarray, list[dict]]:
    """:func:`run_blocks` over an in-memory ``(C, L)`` array; returns ``(K, L)`` and block infos."""
    check_block_seconds(block_seconds, overlap_seconds)
    length = audio.shape[-1]
    out = np.zeros((num_sources, length), dtype=np.float32)
    pos = [0]

    def write(chunk: np.ndarray) -> None:
        out[:, pos[0]:pos[0] + chunk.shape[1]] = chunk
        pos[0] += chunk.shape[1]

    infos = run_blocks(lambda a, b: audio[:, a:b], length, process, write,
                       block=block_samples(block_seconds, rate),
                       overlap=block_samples(overlap_seconds, rate), progress=progress)
    return out, infos


# ---------------------------------------------------------------------------------------
# files


@dataclass(frozen=True)
class ScannedAudio:
    """Header facts and a full-pass check of an audio file."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    peak: float


def scan_audio(path: str | os.PathLike) -> ScannedAudio:
    """Read a file once, chunk by chunk: unreadable, empty, NaN and all-silent are errors."""
    path = Path(path)
    info = audio_info(path)                     # missing / unreadable / 0 frames
    peak, seen = 0.0, 0
    try:
        with sf.SoundFile(str(path)) as f:
            while True:
                chunk = f.read(SCAN_FRAMES, dtype="float32", always_2d=True)
                if chunk.shape[0] == 0:
                    break
                if not np.isfinite(chunk).all():
                    raise BootsepError("contains NaN or infinite samples "
                                       f"(near {seen / info.samplerate:.2f} s)", path)
                peak = max(peak, float(np.abs(chunk).max()))
                seen += chunk.shape[0]
    except BootsepError:
        raise
    except Exception as exc:
        raise BootsepError(f"unreadable audio ({exception_text(exc)})", path) from exc
    if seen == 0:
        raise BootsepError("empty audio file (0 samples)", path)
    if peak <= SILENCE_PEAK:
        raise BootsepError(f"audio is silent (peak {peak:.1e}); nothing to separate", path)
    return ScannedAudio(path, int(info.samplerate), int(info.channels), seen, peak)



def _out_format(path: Path, frames: int) -> tuple[str, str]:
    """(format, subtype) of an output file: float WAV (RF64 beyond 4 GB) or FLAC."""
    if path.suffix.lower() == ".flac":
        return "FLAC", "PCM_24"
    return ("RF64" if frames * 4 >= 2 ** 32 - 2 ** 20 else "WAV"), "FLOAT"


def separate_file(path: str | os.PathLike, out_paths: Sequence[str | os.PathLike],
                  process: Callable[[np.ndarray], BlockOutput], *, block_seconds: float | None,
                  overlap_seconds: float, channels: Sequence[int] | None = None,
                  scanned: ScannedAudio | None = None, progress: bool = True,
                  ) -> tuple[ScannedAudio, list[dict]]:
    """Separate an audio file block by block into one mono file per source.

    Reads only the current block (``channels`` of it, default all) and writes each finished
    chunk at once, to temporary files beside ``out_paths`` that are renamed onto them only
    when every block succeeded: an error leaves no output file, partial or stale-renamed.
    Outputs have the input's sample rate and length.
    """
    path = Path(path)
    check_block_seconds(block_seconds, overlap_seconds)
    scanned = scanned or scan_audio(path)
    rate, length = scanned.sample_rate, scanned.frames
    outs = [Path(p) for p in out_paths]
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(_open_read(path))
        tmps = [stack.enter_context(atomic_path(p)) for p in outs]
        writers = []
        for p, tmp in zip(outs, tmps):
            fmt, subtype = _out_format(p, length)
            writers.append(stack.enter_context(
                sf.SoundFile(str(tmp), "w", samplerate=rate, channels=1, format=fmt,
                             subtype=subtype)))

        def read(a: int, b: int) -> np.ndarray:
            try:
                src.seek(a)
                data = src.read(b - a, dtype="float32", always_2d=True)
            except Exception as exc:
                raise BootsepError(f"unreadable audio ({exception_text(exc)})", path) from exc
            if data.shape[0] != b - a:
                raise BootsepError(f"audio ended early: read {a + data.shape[0]} of {length} "
                                   "samples", path)
            if channels is not None:
                data = data[:, list(channels)]
            if not np.isfinite(data).all():
                raise BootsepError(f"contains NaN or infinite samples (near {a / rate:.2f} s)",
                                   path)
            return np.ascontiguousarray(data.T)

        def write(chunk: np.ndarray) -> None:
            if len(chunk) != len(writers):
                raise BootsepError(f"separator returned {len(chunk)} sources, "
                                   f"expected {len(writers)}", path)
            for w, c in zip(writers, chunk):
                w.write(c)

        block, overlap = block_samples(block_seconds, rate), block_samples(overlap_seconds, rate)
        with Progress(len(plan_blocks(length, block, overlap)), f"separate {path.name}", "block",
                      enabled=progress) as bar:
            infos = run_blocks(read, length, process, write, block=block, overlap=overlap,
                               progress=bar)
        for w in writers:                         # flush before the renames of the ExitStack
            w.close()
    return scanned, infos


@contextlib.contextmanager
def _open_read(path: Path):
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:
        raise BootsepError(f"unreadable audio ({exception_text(exc)})", path) from exc
    with f:
        yield f
