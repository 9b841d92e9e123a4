"""Warm start of a self-training round's student from the model that relabelled the round.

Iterative pseudo-labelling (Xu et al., "Iterative pseudo-labeling for speech recognition",
Interspeech 2020) keeps training the same model on each round's new labels instead of starting
afresh. The relabel stage records which student it used and the sha256 of that student's
``model.pt`` in the round's training-split summary (:data:`STUDENT_KEY`, :data:`DIGEST_KEY`);
the round's student starts from exactly that file, so DVC's dependency of the round's stage on
the round's shards also covers the weights it starts from, and a model file changed since the
relabelling is refused (one line naming it) instead of silently used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bootsep.errors import BootsepError
from bootsep.pipeline.stft import StftConfig
from bootsep.pipeline.storage.layout import SUMMARY_NAME
from bootsep.train.loop import BEST_MODEL
from bootsep.train.model import ModelConfig
from bootsep.train.saved_model import load_model

STUDENT_KEY = "student"
DIGEST_KEY = "student_model_sha256"


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def round_student(teacher_dir: Path) -> tuple[str, str]:
    """``(student condition, sha256 of its model.pt)`` the round ``teacher_dir`` (a
    ``data/shards/spatial/<round>`` folder) was relabelled with, from its training summary."""
    path = Path(teacher_dir) / "train" / SUMMARY_NAME
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BootsepError(f"cannot read the round's summary ({exc.__class__.__name__}); "
                           "warm_start needs the relabel stage's output", path) from exc
    student, digest = summary.get(STUDENT_KEY), summary.get(DIGEST_KEY)
    if not isinstance(student, str) or not isinstance(digest, str):
        raise BootsepError(f"no {STUDENT_KEY} / {DIGEST_KEY} recorded: not a self-training "
                           "round's shards (warm_start is for rounds), or written by an older "
                           "bootsep (rerun its relabel stage)", path)
    return student, digest


def warm_state(teacher_dir: Path, model_root: Path, stft: StftConfig,
               config: ModelConfig) -> tuple[str, str, dict]:
    """The round's student, its model digest and its weights (a state dict), checked against
    the digest the relabelling recorded and loaded as any model folder is
    (:func:`~bootsep.train.saved_model.load_model`, trained on ``stft``); a student whose
    network differs from ``config`` (the condition's) is a one-line error."""
    student, digest = round_student(teacher_dir)
    path = Path(model_root) / student / BEST_MODEL
    if not path.is_file():
        raise BootsepError(f"the model of student '{student}' that relabelled the round is "
                           "missing (warm_start starts from it)", path)
    found = file_sha256(path)
    if found != digest:
        raise BootsepError(f"changed since the round was relabelled with it (sha256 {found[:12]}, "
                           f"recorded {digest[:12]}); rerun the round's relabel stage", path)
    model, _ = load_model(path.parent, expect_stft=stft)
    if model.config != config:
        raise BootsepError(f"its network ({model.config}) is not this condition's ({config}); "
                           "the round's student must have the same model settings", path)
    return student, digest, model.state_dict()


def load_warm(model: torch.nn.Module, weights: dict, path: Path) -> None:
    """Copy ``weights`` (normaliser statistics included) into ``model``; a student of another
    size is a one-line error naming ``path``."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise BootsepError("warm_start: its weights do not fit this condition's model "
                           f"({str(exc).splitlines()[0]}); the round's student must have the "
                           "same model settings", path) from exc
