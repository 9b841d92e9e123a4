"""What the shard stages share: splits, shard chunking, the per-split output folders."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from bootsep.atomic import write_text_atomic
from bootsep.config import StftSettings
from bootsep.pipeline.stft import StftConfig

T = TypeVar("T")

SHARD_ROOT = Path("data/shards")
SUMMARY_NAME = "summary.json"


def stft_config(settings: StftSettings) -> StftConfig:
    """The transform of the validated ``stft`` params section (window and hop in samples)."""
    return StftConfig(settings.sample_rate, settings.win_length, settings.hop_length,
                      settings.window)


def chunk(items: Sequence[T], size: int) -> list[list[T]]:
    """Consecutive chunks of at most ``size`` items (the shard layout)."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def same_shard_in(folder: str | Path, shard_path: str | Path) -> Path:
    """The shard of ``folder`` that stands for ``shard_path``: every stage's shard of a chunk
    of utterances has the same file name as the stft shard it was computed from."""
    return Path(folder) / Path(shard_path).name


def write_summary(out_dir: Path, summary: dict) -> None:
    """A small JSON beside the shards: counts and totals, for people and DVC metrics."""
    write_text_atomic(out_dir / SUMMARY_NAME, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def summary_count(shard_dir: Path, key: str = "utterances") -> int:
    """A count from a shard set's summary.json (0 when absent): totals for progress bars."""
    path = Path(shard_dir) / SUMMARY_NAME
    return int(json.loads(path.read_text()).get(key, 0)) if path.is_file() else 0
