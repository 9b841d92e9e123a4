"""Atomic checkpoints: torch.save to a temporary name, then rename."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bootsep.atomic import atomic_path
from bootsep.errors import BootsepError


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Same ``state`` gives the same bytes: torch names the archive's records after a path it
    is given (here a random temporary name), so it is given an open file instead."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise BootsepError("checkpoint not found", path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise BootsepError(f"unreadable checkpoint ({' '.join(str(exc).split())[:160]})", path) from None
