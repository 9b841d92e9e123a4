"""The microphone array of a corpus split, when the corpus knows it: ``<split>/array.json``.

Written by corpus builders that place the microphones themselves (the embedded tts corpus);
absent for corpora whose geometry is unknown or changes per mixture (a user's folder, MERL's
spatialized wsj0-2mix). The stft stage copies it into its shards' attributes, where the
``delay`` teacher reads it (``channels: all``: one direction per source instead of free
delays per microphone pair).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bootsep.atomic import write_text_atomic
from bootsep.errors import BootsepError, exception_text

GEOMETRY_NAME = "array.json"


@dataclass(frozen=True)
class ArrayGeometry:
    """``mic_pos (C, 3)`` metres, channel order of the recordings; ``speed_of_sound`` m/s."""

    mic_pos: np.ndarray
    speed_of_sound: float


def write_geometry(folder: str | os.PathLike, geometry: ArrayGeometry) -> None:
    data = {"mic_pos_m": np.asarray(geometry.mic_pos, dtype=float).round(9).tolist(),
            "speed_of_sound": float(geometry.speed_of_sound)}
    write_text_atomic(Path(folder) / GEOMETRY_NAME, json.dumps(data, indent=1) + "\n")


def read_geometry(folder: str | os.PathLike) -> ArrayGeometry | None:
    """The split's array, or None when the corpus does not record one."""
    path = Path(folder) / GEOMETRY_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        mic_pos = np.asarray(data["mic_pos_m"], dtype=np.float64)
        c = float(data["speed_of_sound"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BootsepError(f"unreadable array geometry ({exception_text(exc)})", path) from exc
    if mic_pos.ndim != 2 or mic_pos.shape[1] != 3 or mic_pos.shape[0] < 2 \
            or not np.all(np.isfinite(mic_pos)) or not c > 0:
        raise BootsepError(f"array geometry needs mic_pos_m as C >= 2 rows of (x, y, z) metres "
                           f"and a positive speed_of_sound, got {mic_pos.shape} and {c}", path)
    return ArrayGeometry(mic_pos, c)
