"""The per-split ``manifest.csv``: one row per mixture, the contract between the corpus
stage and everything after it.

Required columns: ``id, split, mixture, sample_rate, num_channels, num_samples,
num_sources`` and ``s{k}_image`` for k = 1..num_sources (empty when the corpus has no
references). Optional: ``start``, the mixture's first sample in its files (a segment of a
long recording, :mod:`bootsep.pipeline.corpus.folder`; the mixture is then its
``num_samples`` samples from there; empty or absent: the whole files). Any further columns
(speakers, azimuths, levels, text, ...) are kept as strings in :attr:`Mixture.meta`. Paths
are relative to the manifest's folder, or absolute for corpora read in place.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from bootsep.atomic import write_text_atomic
from bootsep.errors import BootsepError

SPLITS = ("train", "valid", "test")
MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("id", "split", "mixture", "sample_rate", "num_channels",
                    "num_samples", "num_sources")
START_COLUMN = "start"


@dataclass(frozen=True)
class Mixture:
    """One mixture of a split, with resolved paths."""

    id: str
    split: str
    mixture: Path
    sample_rate: int
    num_channels: int
    num_samples: int
    source_images: tuple[Path, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)
    start: int | None = None     # first sample in the files of a segment; None: whole files

    @property
    def has_references(self) -> bool:
        return len(self.source_images) > 0

    def segment(self) -> dict:
        """The ``start`` and ``frames`` arguments of :func:`~bootsep.pipeline.audio.read_audio`
        (and the loaders over it) that read this mixture from its files: none for a whole
        file, else its ``num_samples`` samples from ``start``."""
        return {} if self.start is None else {"start": self.start, "frames": self.num_samples}


def image_column(k: int) -> str:
    """Column of the k-th (1-based) source image."""
    return f"s{k}_image"


def write_manifest(path: str | os.PathLike, rows: list[dict], num_sources: int) -> None:
    """Write rows (dicts) as CSV atomically; required columns first, then the rest sorted."""
    path = Path(path)
    columns = list(REQUIRED_COLUMNS) + [image_column(k) for k in range(1, num_sources + 1)]
    extra = sorted({key for row in rows for key in row} - set(columns))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns + extra, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _fmt(row.get(key, "")) for key in columns + extra})
    write_text_atomic(path, buf.getvalue())


def read_manifest(path: str | os.PathLike) -> list[Mixture]:
    """Read and validate a manifest; relative paths are resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise BootsepError("manifest not found (run the corpus stage first)", path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BootsepError(f"manifest lacks column(s) {', '.join(missing)}", path)
        out = []
        seen = set()
        for line, row in enumerate(reader, start=2):
            try:
                k = int(row["num_sources"])
                images = tuple(row.get(image_column(i)) or "" for i in range(1, k + 1))
                mix = Mixture(
                    id=row["id"], split=row["split"],
                    mixture=_resolve(path.parent, row["mixture"]),
                    sample_rate=int(row["sample_rate"]),
                    num_channels=int(row["num_channels"]),
                    num_samples=int(row["num_samples"]),
                    source_images=(tuple(_resolve(path.parent, p) for p in images)
                                   if all(images) else ()),
                    meta={c: v for c, v in row.items() if c not in REQUIRED_COLUMNS
                          and c != START_COLUMN and not c.endswith("_image")},
                    start=int(row[START_COLUMN]) if row.get(START_COLUMN) else None,
                )
            except (TypeError, ValueError) as exc:
                raise BootsepError(f"line {line}: bad value ({exc})", path) from exc
            if mix.start is not None and mix.start < 0:
                raise BootsepError(f"line {line}: start is {mix.start}, not a sample index",
                                   path)
            if mix.id in seen:
                raise BootsepError(f"line {line}: duplicate mixture id '{mix.id}'", path)
            seen.add(mix.id)
            out.append(mix)
    return out


def _resolve(base: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else base / q


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Path):
        return str(value)
    return "" if value is None else str(value)
