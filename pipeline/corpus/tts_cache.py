"""The synthesis cache: each utterance of the tts corpus is synthesized once.

An utterance (float32 ``(N,)`` at the corpus rate, after trimming and level normalisation)
is stored as ``<root>/<key[:2]>/<key>.npy``, ``key`` = sha256 of the speaker's engine and
every voice setting, the text, the sample rate and ``CACHE_VERSION`` (raise it when the
synthesis code changes its output). The root outlives DVC's deletion of the corpus:
``$BOOTSEP_TTS_CACHE``, or ``.cache/tts`` under the working folder (the repository root when
DVC runs the stage). Entries are written atomically, so the cache only changes speed, never
the corpus (the engines' own versions are not in the key: clear the folder after upgrading
espeak-ng, flite, festival or the kokoro packages).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from bootsep.atomic import atomic_path
from bootsep.errors import BootsepError

CACHE_VERSION = 1
# Speaker settings added after version 1, left out of the key at their neutral value, so the
# utterances cached before them keep their keys.
LATER_SETTINGS = {"warp": 1.0, "tilt": 0.0}
ENV_VAR = "BOOTSEP_TTS_CACHE"
DEFAULT_DIR = Path(".cache") / "tts"


def default_root() -> Path:
    """``$BOOTSEP_TTS_CACHE`` when set, else ``.cache/tts`` (relative to the working folder)."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def cache_key(speaker, text: str, sample_rate: int) -> str:
    """sha256 hex of every setting that changes the utterance (not the speaker's id)."""
    settings = {k: v for k, v in dataclasses.asdict(speaker).items()
                if k != "id" and not (k in LATER_SETTINGS and v == LATER_SETTINGS[k])}
    blob = json.dumps({"version": CACHE_VERSION, "speaker": settings, "text": text,
                       "sample_rate": int(sample_rate)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class TtsCache:
    """Utterances on disk by :func:`cache_key`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        """The stored utterance, or None when absent; an unreadable entry is an error."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            audio = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BootsepError(f"synthesis cache entry {path} is unreadable ({exc}); "
                               "delete it") from exc
        if audio.dtype != np.float32 or audio.ndim != 1:
            raise BootsepError(f"synthesis cache entry {path} is not a float32 vector; delete it")
        return audio

    def store(self, key: str, audio: np.ndarray) -> None:
        with atomic_path(self.path(key)) as tmp, open(tmp, "wb") as fh:
            np.save(fh, np.asarray(audio, np.float32), allow_pickle=False)
