"""A model folder whose condition could not be trained on this corpus (torch-free).

A ground-truth condition (``train_conditions.gt``) learns from the ideal binary labels of the
source images, which a corpus without references (a folder of recordings) does not have. DVC
still runs its ``train_gt@<name>`` stage (the graph comes from ``params.yaml``), so the stage
completes by writing every output ``dvc.yaml`` declares as a marker instead of a model:
``params.json`` and ``metrics.json`` carry ``"skipped": <reason>``, ``model.pt`` and
``checkpoint.pt`` hold ``{"skipped": <reason>, "condition": ...}`` (no weights) and ``log.csv``
only its header. The labels, evaluate and report stages leave such a condition out with a note
(:func:`skipped_reason`); loading it as a model (``bootsep separate``) is a one-line error.
When the corpus later has references, DVC reruns the stage (its inputs changed) and the marker
checkpoint, which has no run fingerprint, is never resumed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bootsep.errors import BootsepError

SKIPPED = "skipped"
PARAMS_JSON = "params.json"
NO_REFERENCES = ("not trained: the corpus has no references "
                 "(ground-truth labels need the source images)")


def skipped_reason(folder: str | os.PathLike) -> str | None:
    """Why the model folder holds no model (its ``params.json`` marker), or None for a model."""
    path = Path(folder) / PARAMS_JSON
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BootsepError(f"unreadable model parameters ({exc})", path) from exc
    reason = meta.get(SKIPPED) if isinstance(meta, dict) else None
    return str(reason) if reason else None
