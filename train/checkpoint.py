"""Atomic, reproducible checkpoints: torch.save to a temporary name, then rename."""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from pathlib import Path

import torch

from bootsep.atomic import atomic_path
from bootsep.errors import BootsepError, exception_text


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Same ``state`` gives the same bytes: torch names the archive's records after a path it
    is given (here a random temporary name), so it is given an open file instead; and the
    state is first made :func:`canonical`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(canonical(state), f)


def canonical(obj):
    """``obj`` rebuilt so that its pickle depends on its content only.

    Pickle writes a repeated object once and refers back to it, by identity: equal strings
    that are one object in a run built in memory (identifiers interned by Python) but two
    in a run resumed from disk (strings read back) would give different bytes for equal
    checkpoints. Strings are interned and dicts, lists and tuples rebuilt (no shared
    containers); tensors and other objects are kept as they are.
    """
    if type(obj) is str:
        return sys.intern(obj)
    if type(obj) in (dict, OrderedDict):
        out = type(obj)((canonical(k), canonical(v)) for k, v in obj.items())
        for name, value in getattr(obj, "__dict__", {}).items():   # state_dict()'s _metadata
            setattr(out, name, canonical(value))
        return out
    if type(obj) in (list, tuple):
        return type(obj)(canonical(v) for v in obj)
    return obj


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise BootsepError("checkpoint not found", path)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise BootsepError(f"unreadable checkpoint ({exception_text(exc, 160)})",
                           path) from exc
