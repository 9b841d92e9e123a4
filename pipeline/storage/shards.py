"""Sharded, self-describing HDF5: the on-disk format between stages.

A shard holds many utterances. Per-frame arrays of all utterances are concatenated along
the first axis (rows ``frame_offsets[u]:frame_offsets[u+1]`` belong to utterance ``u``);
per-utterance arrays have one row per utterance. Every dataset carries ``units``,
``description`` and ``per`` attributes (from :mod:`bootsep.pipeline.storage.schema`); the file
carries the schema version, stage, split, shard index, utterance ids and the STFT config,
so ``h5ls -rv`` tells what is inside. Files are written to a temporary name and renamed
(:func:`~bootsep.atomic.atomic_path`), exactly one writer per file.

Shard sets of different stages line up by shard index and utterance order;
:func:`check_aligned` verifies the ids.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from bootsep import __version__
from bootsep.atomic import atomic_path
from bootsep.errors import BootsepError, exception_text
from bootsep.pipeline.stft import StftConfig, plain_attr
from bootsep.pipeline.storage.float16 import complex_from_pairs, to_float16
from bootsep.pipeline.storage.schema import FIELDS, SCHEMA_VERSION

SHARD_GLOB = "shard-*.h5"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def write_shard(path: str | os.PathLike, *, stage: str, split: str, index: int,
                ids: Sequence[str], stft: StftConfig,
                frames: Mapping[str, Sequence[np.ndarray]] | None = None,
                utterances: Mapping[str, np.ndarray] | None = None,
                attrs: Mapping[str, object] | None = None) -> Path:
    """Write one shard atomically.

    Args:
        ids: utterance ids, in order (U,).
        frames: name → list of U arrays ``(T_u, ...)``; all share the same ``T_u`` per utterance.
        utterances: name → array ``(U, ...)``.
        attrs: extra file attributes (the stage's parameters, for provenance).
    """
    path = Path(path)
    frames, utterances = dict(frames or {}), dict(utterances or {})
    num_frames = _frame_counts(path, ids, frames)
    offsets = np.concatenate([[0], np.cumsum(num_frames)]).astype(np.int64)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"schema_version": SCHEMA_VERSION, "stage": stage, "split": split,
                            "shard_index": int(index), "num_utterances": len(ids),
                            "bootsep_version": __version__, **stft.as_attrs()})
            for key, value in (attrs or {}).items():
                f.attrs[key] = _attr_value(value)
            _dataset(f, "ids", np.array(list(ids), dtype=h5py.string_dtype()))
            _dataset(f, "num_frames", num_frames.astype(np.int32))
            _dataset(f, "frame_offsets", offsets)
            for name, parts in frames.items():
                data = np.concatenate(parts, axis=0) if len(parts) else np.zeros((0,))
                _dataset(f, name, data)
            for name, data in utterances.items():
                data = np.asarray(data)
                if data.shape[:1] != (len(ids),):
                    raise ValueError(f"{name}: expected {len(ids)} rows, got shape {data.shape}")
                _dataset(f, name, data)
    return path


class Shard:
    """Read access to one shard; use as a context manager.

    ``stage`` and ``stft`` (when given) are checked against the file's attributes.
    """

    def __init__(self, path: str | os.PathLike, stage: str | None = None,
                 stft: StftConfig | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise BootsepError("shard not found", self.path)
        try:
            self._f = h5py.File(self.path, "r")
            self.attrs = {k: plain_attr(v) for k, v in self._f.attrs.items()}
            self.ids = [s.decode() if isinstance(s, bytes) else str(s) for s in self._f["ids"][()]]
            self.num_frames = self._f["num_frames"][()].astype(np.int64)
            self.offsets = self._f["frame_offsets"][()]
        except BootsepError:
            raise
        except Exception as exc:  # h5py raises OSError/KeyError for truncated or foreign files
            raise BootsepError(f"not a readable bootsep shard ({exception_text(exc)}); "
                               "the file may be truncated or corrupt: rerun its stage",
                               self.path) from exc
        version = self.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BootsepError(f"shard schema version {version}, this bootsep reads "
                               f"{SCHEMA_VERSION}", self.path)
        if stage is not None and self.attrs.get("stage") != stage:
            raise BootsepError(f"is a '{self.attrs.get('stage')}' shard, expected '{stage}'",
                               self.path)
        self.stft = StftConfig.from_attrs(self.attrs)
        if stft is not None and self.stft != stft:
            raise BootsepError(f"was computed with {self.stft}, but the current config is {stft}; "
                               "rerun the pipeline for this STFT", self.path)

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, name: str) -> bool:
        return name in self._f

    def names(self) -> list[str]:
        return list(self._f.keys())

    def frames(self, name: str, u: int) -> np.ndarray:
        """Per-frame dataset ``name`` of utterance ``u``: ``(T_u, ...)``."""
        return self._read(name, slice(int(self.offsets[u]), int(self.offsets[u + 1])))

    def all_frames(self, name: str) -> list[np.ndarray]:
        """Per-frame dataset ``name`` of every utterance (one read, then split)."""
        data = self._read(name, slice(None))
        return np.split(data, self.offsets[1:-1])

    def all_stft(self, name: str) -> list[np.ndarray]:
        """STFT dataset ``name`` of every utterance as complex64 ``(T_u, F)`` (stored as float16
        pairs scaled by ``2**-stft_exponent``:
        :func:`~bootsep.pipeline.storage.float16.complex_from_pairs`)."""
        exponents = self.utterances("stft_exponent")
        return [complex_from_pairs(p, e) for p, e in zip(self.all_frames(name), exponents)]

    def utterances(self, name: str) -> np.ndarray:
        """Per-utterance dataset ``name``: ``(U, ...)``."""
        return self._read(name, slice(None))

    def dataset(self, name: str) -> h5py.Dataset:
        return self._get(name)

    def _get(self, name: str) -> h5py.Dataset:
        if name not in self._f:
            raise BootsepError(f"has no dataset '{name}'", self.path)
        return self._f[name]

    def _read(self, name: str, sel) -> np.ndarray:
        ds = self._get(name)
        try:
            return ds[sel]
        except Exception as exc:
            raise BootsepError(f"cannot read '{name}' ({exception_text(exc)}); the file may be "
                               "truncated or corrupt: rerun its stage", self.path) from exc


def shard_paths(directory: str | os.PathLike) -> list[Path]:
    """The shard files of a shard set, in index order; a missing or empty set is an error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BootsepError("shard folder not found (run the stage that writes it)", directory)
    paths = sorted(directory.glob(SHARD_GLOB))
    if not paths:
        raise BootsepError("no shard-*.h5 files in this folder", directory)
    return paths


def check_aligned(a: Shard, b: Shard) -> None:
    """Shards of two stages must hold the same utterances in the same order (the one check of
    shard alignment; the error names ``a``, the later stage's shard)."""
    if a.ids != b.ids:
        first = next((i for i, (x, y) in enumerate(zip(a.ids, b.ids)) if x != y),
                     min(len(a), len(b)))
        raise BootsepError(f"utterance ids do not line up with {b.path} (first difference at "
                           f"position {first}); rerun the later stage", a.path)


def aligned_shard_paths(*directories: str | os.PathLike) -> list[tuple[Path, ...]]:
    """Shard paths of several stages, zipped by shard name; differing sets are an error."""
    sets = [shard_paths(d) for d in directories]
    names = [[p.name for p in s] for s in sets]
    for d, n in zip(directories[1:], names[1:]):
        if n != names[0]:
            raise BootsepError(f"shard files differ from those in {directories[0]}; "
                               "rerun the stage", d)
    return list(zip(*sets))


def _frame_counts(path: Path, ids: Sequence[str],
                  frames: Mapping[str, Sequence[np.ndarray]]) -> np.ndarray:
    counts = None
    for name, parts in frames.items():
        if len(parts) != len(ids):
            raise ValueError(f"{path}: '{name}' has {len(parts)} utterances, expected {len(ids)}")
        c = np.array([p.shape[0] for p in parts], dtype=np.int64)
        if counts is not None and not np.array_equal(c, counts):
            raise ValueError(f"{path}: '{name}' frame counts differ from other per-frame datasets")
        counts = c
    return counts if counts is not None else np.zeros(len(ids), dtype=np.int64)


def _dataset(f: h5py.File, name: str, data: np.ndarray) -> None:
    spec = FIELDS.get(name)
    if spec is None:
        raise KeyError(f"dataset '{name}' is not described in "
                       "bootsep.pipeline.storage.schema.FIELDS")
    if spec.dtype is np.float16:
        data = to_float16(data)
    else:
        data = np.asarray(data, dtype=spec.dtype) if spec.dtype is not None else np.asarray(data)
    ds = f.create_dataset(name, data=data)
    ds.attrs.update({"per": spec.per, "units": spec.units, "description": spec.description})


def _attr_value(value):
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    if isinstance(value, dict):
        return str(value)
    return value



@contextlib.contextmanager
def open_aligned(group: Sequence[Path], stages: Sequence[str], stft: StftConfig | None = None
                 ) -> Iterator[tuple[Shard, ...]]:
    """Open one shard of each stage (same index), checking stage, STFT config and ids."""
    with contextlib.ExitStack() as stack:
        shards = tuple(stack.enter_context(Shard(p, stage=st, stft=stft))
                       for p, st in zip(group, stages))
        for other in shards[1:]:
            check_aligned(other, shards[0])
        yield shards

