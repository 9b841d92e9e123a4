"""Corpus kind ``folder``: index any folder of multichannel recordings in place.

This is the paper's real use case: stereo (or wider) recordings of a scene, no isolated
sources. Nothing is copied; the manifests hold absolute paths. Two layouts are recognised
under ``root``:

(a) recordings only (all are mixtures, no references), flat or nested::

        <root>/session1/take1.wav
        <root>/session1/take2.flac
        <root>/other.wav

(b) wsj0-2mix-like, chosen when ``<root>/mix/`` and ``<root>/s1/`` are folders::

        <root>/mix/<rel>.wav     the mixtures (flat or nested)
        <root>/s1/<rel>.wav      spatial image of source 1, same name as its mixture
        <root>/s2/<rel>.wav      ... one folder per source, s1..sK without gaps

   K (the number of ``s<k>/`` folders) must equal ``num_sources``; anything else in
   ``root`` is ignored.

Every file's header is checked: at least 2 channels, one sample rate for the
whole corpus, readable and non-empty; a source image must match its mixture's length,
channel count and rate. Files and folders whose names start with ``.`` are skipped (e.g.
macOS ``._x.wav`` resource forks). A relative ``root`` is taken from the working folder.
Each mixture is also read once, piece by piece, to report (logging warnings, one per
recording, and a count at the end; never an error) the recordings with a channel that carries
no information of its own relative to channel 0: silent, or a copy up to gain/sign
(:mod:`bootsep.pipeline.channels`). Spatial clustering of such a pair has no cue; the
spatial stage stores it degenerate, with confidence 0.

Split: the sorted list of recordings is permuted by ``np.random.default_rng(seed)``; the
first ``round(n * test_fraction)`` go to test, the next ``round(n * valid_fraction)`` to
valid, the rest to train. A split with a positive fraction gets at least one recording as
long as train keeps one.

Long recordings (``segment_seconds``, null: each recording one mixture): a recording of
``L`` samples, ``S`` the segment length in samples, is cut into ``n = round(L / S)``
consecutive segments of equal length (to a sample: between 3/4 and 5/4 of ``S``), each a
mixture of its own (manifest ``start``; ``recording`` and ``segment`` name its origin); one
shorter than 1.5 ``S`` stays whole, its id unchanged. Talkers move and change over minutes:
the spatial teachers fit one model per mixture, and the trainer takes one crop of at most
``train.max_frames`` per mixture and epoch, so a recording left whole gives one spatial model
to all of it and one 3.2 s crop per epoch. The split is drawn per recording (its segments
stay together: no recording is both trained and tested on). Segment ids are the
recording's with ``__seg<k>`` (``k`` from 0, four digits) appended: unique, as the
recordings' are.

Ids are the path relative to the layout's top folder without its suffix, with ``/``
written ``__`` and other characters outside ``[A-Za-z0-9._-]`` written ``_``; a clash
(``a.wav`` beside ``a.flac``) gets ``-2``, ``-3``, ... in sorted order.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import soundfile as sf

from bootsep.config import FolderSettings
from bootsep.errors import BootsepError, exception_text
from bootsep.pipeline.audio import AUDIO_SUFFIXES, audio_info
from bootsep.pipeline.channels import FIRST_SILENT, classify, describe, pair_statistics
from bootsep.pipeline.corpus.manifest import MANIFEST_NAME, SPLITS, image_column, write_manifest

log = logging.getLogger(__name__)

SECTION = "corpus.folder"
MIN_CHANNELS = 2
SCAN_FRAMES = 1 << 16          # frames per read when checking a recording's channels


def index_folder(cfg: FolderSettings, seed: int, out_dir: Path) -> dict[str, int]:
    """Write ``<out_dir>/<split>/manifest.csv`` for the recordings under ``cfg.root``.

    ``cfg`` is the validated ``corpus.folder`` section. Returns the number of mixtures per
    split (train, valid, test).
    """
    root = require_root(cfg.root, f"{SECTION}.root")
    valid_fraction, test_fraction = cfg.valid_fraction, cfg.test_fraction
    num_sources = cfg.num_sources

    ref_dirs = reference_dirs(root)
    if ref_dirs:
        if len(ref_dirs) != num_sources:
            raise BootsepError(f"has {len(ref_dirs)} reference folder(s) s1..s{len(ref_dirs)}/ "
                               f"but parameter '{SECTION}.num_sources' is {num_sources}", root)
        top = root / "mix"
    else:
        top = root
    files = list_audio(top)
    if not files:
        raise BootsepError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found", top)

    rate = RateCheck()
    channels = ChannelReport()
    rows = []
    for path, rec_id in zip(files, unique_ids([p.relative_to(top) for p in files])):
        info = check_recording(path, rate)
        channels.check(path)
        row = {"id": rec_id, "mixture": path, "sample_rate": info.samplerate,
               "num_channels": info.channels, "num_samples": info.frames,
               "num_sources": num_sources, "relpath": path.relative_to(top).as_posix(),
               "duration_s": info.frames / info.samplerate}
        for k, ref_dir in enumerate(ref_dirs, start=1):
            image = ref_dir / path.relative_to(top)
            check_image(image, path, info, f"s{k}")
            row[image_column(k)] = image
        rows.append(row)
    channels.summary()

    assignment = split_assignment(len(rows), valid_fraction, test_fraction, seed)
    rows = [segment_rows(row, cfg.segment_seconds) for row in rows]   # ids stay unique
    counts = {}
    for split in SPLITS:
        split_rows = [dict(r, split=split) for group, s in zip(rows, assignment) if s == split
                      for r in group]
        write_manifest(Path(out_dir) / split / MANIFEST_NAME, split_rows, num_sources)
        counts[split] = len(split_rows)
    return counts


def segment_bounds(length: int, segment: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the ``max(1, round(length / segment))`` consecutive, equal (to a
    sample) segments that cover ``length`` samples."""
    n = max(1, int(np.floor(length / segment + 0.5)))
    edges = [length * i // n for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def segment_rows(row: dict, segment_seconds: float | None) -> list[dict]:
    """The manifest rows of one recording's row: itself when ``segment_seconds`` is None or
    the recording is one segment long, else one per segment (:func:`segment_bounds`) with
    its ``start``, ``num_samples``, ``duration_s``, ``recording`` and ``segment``."""
    if segment_seconds is None:
        return [row]
    rate = row["sample_rate"]
    bounds = segment_bounds(row["num_samples"], max(1, round(segment_seconds * rate)))
    if len(bounds) == 1:
        return [row]
    return [dict(row, id=f"{row['id']}__seg{k:04d}", start=a, num_samples=b - a,
                 duration_s=(b - a) / rate, recording=row["id"], segment=k)
            for k, (a, b) in enumerate(bounds)]


def require_root(value, param: str) -> Path:
    """The absolute corpus root named by parameter ``param``; it must be an existing folder."""
    if value is None or str(value).strip() == "":
        raise BootsepError(f"parameter '{param}' is not set (the folder holding the corpus)")
    root = Path(os.path.expanduser(str(value))).absolute()
    if not root.exists():
        raise BootsepError(f"corpus root not found (parameter '{param}')", root)
    if not root.is_dir():
        raise BootsepError(f"corpus root is not a folder (parameter '{param}')", root)
    return root


def reference_dirs(root: Path) -> list[Path]:
    """``[root/s1, root/s2, ...]`` for layout (b); empty for layout (a).

    Layout (b) needs ``mix/`` and ``s1/``; ``s<k>`` folders with a gap (``s1``, ``s3``) are
    an error rather than a guess.
    """
    if not ((root / "mix").is_dir() and (root / "s1").is_dir()):
        return []
    found = sorted(int(m.group(1)) for entry in os.scandir(root)
                   if entry.is_dir() and (m := re.fullmatch(r"s([1-9][0-9]*)", entry.name)))
    expected = list(range(1, len(found) + 1))
    if found != expected:
        missing = min(set(expected) - set(found))
        raise BootsepError(f"reference folders s1..s{max(found)}/ have a gap: "
                           f"s{missing}/ is missing", root)
    return [root / f"s{k}" for k in found]


def list_audio(top: Path) -> list[Path]:
    """Audio files under ``top`` (recursively, following links once), sorted by relative path."""
    out = []
    seen = set()
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link cycle
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out.extend(Path(dirpath) / f for f in filenames
                   if not f.startswith(".") and f.lower().endswith(AUDIO_SUFFIXES))
    return sorted(out, key=lambda p: p.relative_to(top).as_posix())


def unique_ids(relpaths: list[Path]) -> list[str]:
    """Filename-safe, unique ids from relative paths (suffix dropped), in the given order."""
    ids = []
    taken = set()
    for rel in relpaths:
        base = safe_id(rel.with_suffix("").as_posix())
        rec_id, n = base, 1
        while rec_id in taken:
            n += 1
            rec_id = f"{base}-{n}"
        taken.add(rec_id)
        ids.append(rec_id)
    return ids


def safe_id(text: str) -> str:
    """``a b/c`` -> ``a_b__c``: only ``[A-Za-z0-9._-]``, no leading dot, never empty."""
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in text.split("/")]
    out = "__".join(parts).lstrip(".")
    return out or "recording"


class RateCheck:
    """Remembers the first file's sample rate; later files must have the same one."""

    def __init__(self) -> None:
        self.rate: int | None = None
        self.path: Path | None = None

    def check(self, path: Path, rate: int) -> None:
        if self.rate is None:
            self.rate, self.path = rate, path
        elif rate != self.rate:
            raise BootsepError(f"sample rate {rate} Hz differs from the corpus's {self.rate} Hz "
                               f"(first seen in {self.path})", path)


def check_recording(path: Path, rate: RateCheck, expected_rate: int | None = None):
    """Header of a mixture: readable, non-empty, >= 2 channels, the corpus's sample rate."""
    info = audio_info(path)
    if info.channels < MIN_CHANNELS:
        raise BootsepError(f"has {info.channels} channel(s); spatial clustering needs at least "
                           f"{MIN_CHANNELS}", path)
    if expected_rate is not None and info.samplerate != expected_rate:
        raise BootsepError(f"sample rate {info.samplerate} Hz, expected {expected_rate} Hz", path)
    rate.check(path, info.samplerate)
    return info


def channels_without_information(path: Path) -> dict[int, int]:
    """``{channel: reason code}`` for the channels 1.. of a recording that carry no information
    of their own relative to channel 0 (:func:`bootsep.pipeline.channels.classify` of the whole
    recording, read :data:`SCAN_FRAMES` frames at a time); empty when every channel does."""
    totals = None
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(SCAN_FRAMES, dtype="float32", always_2d=True):
                x = block.T                                       # (C, n)
                sums = pair_statistics(np.broadcast_to(x[:1], x[1:].shape), x[1:])
                totals = sums if totals is None else tuple(t + s for t, s in zip(totals, sums))
    except Exception as exc:         # soundfile raises several types for broken files
        raise BootsepError(f"unreadable audio ({exception_text(exc)})", path) from exc
    if totals is None:
        return {}
    return {c + 1: int(r) for c, r in enumerate(classify(*totals).reason) if r}


class ChannelReport:
    """Checks recordings' channels (:func:`channels_without_information`); logs one warning
    per recording with a channel that carries no information of its own, and a count."""

    def __init__(self) -> None:
        self.checked = 0
        self.flagged: list[Path] = []

    def check(self, path: Path) -> dict[int, int]:
        found = channels_without_information(path)
        self.checked += 1
        if found:
            self.flagged.append(path)
            first_silent = [c for c, r in found.items() if r == FIRST_SILENT][:1]
            what = "; ".join(describe(r, 0, c) for c, r in found.items()
                             if r != FIRST_SILENT or c in first_silent)
            log.warning(f"{path}: {what} (no spatial cue with channel 0)")
        return found

    def summary(self) -> None:
        if self.flagged:
            log.warning(f"{len(self.flagged)} of {self.checked} recordings have a channel "
                        "that carries no information of its own (listed above); spatial "
                        "clustering gives their pairs confidence 0")


def check_image(image: Path, mixture: Path, mix_info, name: str) -> None:
    """A source image must exist and match its mixture's length, channels and sample rate."""
    if not image.is_file():
        raise BootsepError(f"mixture has no {name} counterpart (expected {image})", mixture)
    info = audio_info(image)
    for what, got, want in (("samples", info.frames, mix_info.frames),
                            ("channels", info.channels, mix_info.channels),
                            ("Hz sample rate", info.samplerate, mix_info.samplerate)):
        if got != want:
            raise BootsepError(f"{name} image has {got} {what} but its mixture {mixture} "
                               f"has {want}", image)


def split_assignment(n: int, valid_fraction: float, test_fraction: float,
                     seed: int) -> list[str]:
    """Split name for each of ``n`` recordings (in their sorted order), seeded and deterministic."""
    n_test = _split_size(n, test_fraction)
    n_valid = _split_size(n, valid_fraction)
    while n_test + n_valid >= n and n_test + n_valid > 0:  # keep at least one for train
        if n_valid >= n_test:
            n_valid -= 1
        else:
            n_test -= 1
    order = np.random.default_rng(seed).permutation(n)
    out = ["train"] * n
    for i in order[:n_test]:
        out[i] = "test"
    for i in order[n_test:n_test + n_valid]:
        out[i] = "valid"
    return out


def _split_size(n: int, fraction: float) -> int:
    k = int(round(n * fraction))
    return max(k, 1) if fraction > 0 else 0

