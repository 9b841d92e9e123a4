"""What evaluation passes around: the separated estimates of one mixture, and approach names.

Pure data (numpy only), so the report stage reads results without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bootsep.config.checks import ENSEMBLE_JOIN

SPATIAL_PREFIX = "spatial_"


def teacher_approach(teacher: str) -> str:
    """The approach name of spatial teacher ``teacher`` (its masks on channel 0)."""
    return SPATIAL_PREFIX + teacher


def approach_teacher(approach: str) -> str | None:
    """The teacher of a spatial approach name, None for any other approach."""
    return approach[len(SPATIAL_PREFIX):] if approach.startswith(SPATIAL_PREFIX) else None


BEAMFORMER_PREFIX = "beamformer_"


def beamformer_approach(teacher: str) -> str:
    """The approach name of the MVDR beamformers steered by teacher ``teacher``'s masks."""
    return BEAMFORMER_PREFIX + teacher


def approach_beamformer(approach: str) -> str | None:
    """The teacher of a beamformer approach name, None for any other approach."""
    return approach[len(BEAMFORMER_PREFIX):] if approach.startswith(BEAMFORMER_PREFIX) else None


ENSEMBLE_PREFIX = "ensemble_"


def ensemble_members(entry: str, own_teacher) -> tuple[str, str]:
    """``(model, teacher)`` of an ``evaluate.ensemble_models`` entry: ``'<model>'`` (the model
    with its own teacher, ``own_teacher(model)``) or ``'<model>+<teacher>'`` (with another
    spatial teacher, e.g. a stereo-pair teacher no student learned from)."""
    model, _, teacher = entry.partition(ENSEMBLE_JOIN)
    return model, (teacher or own_teacher(model))


def ensemble_model(entry: str) -> str:
    """The model of an ``evaluate.ensemble_models`` entry (:func:`ensemble_members`)."""
    return entry.partition(ENSEMBLE_JOIN)[0]


def ensemble_approach(kind: str, model: str, models) -> str:
    """The approach name of ensemble entry ``model``'s ensemble ``kind`` (confidence, random,
    oracle, perbin): ``ensemble_<kind>`` for the first of ``models`` (``evaluate.
    ensemble_models``; the paper's Table 1 names), ``ensemble_<kind>@<entry>`` for the others."""
    return f"{ENSEMBLE_PREFIX}{kind}" + ("" if model == models[0] else f"@{model}")


def approach_ensemble(approach: str, models) -> tuple[str, str] | None:
    """``(kind, model)`` of an ensemble approach name (:func:`ensemble_approach`), None for any
    other approach."""
    if not approach.startswith(ENSEMBLE_PREFIX) or not models:
        return None
    kind, _, model = approach[len(ENSEMBLE_PREFIX):].partition("@")
    return kind, (model or models[0])


@dataclass
class MixtureEstimates:
    id: str
    mixture: np.ndarray                     # (L,) channel 0
    references: np.ndarray | None           # (K, L) source images at channel 0
    confidence: dict[str, float]            # teacher -> mean confidence of the mixture
    estimates: dict[str, np.ndarray] = field(default_factory=dict)   # approach -> (K, L)
    logmag_db: np.ndarray | None = None     # (T, F), kept for example figures
    masks: dict[str, np.ndarray] = field(default_factory=dict)       # approach -> (K, T, F)
    subset: str = ""                        # the manifest's ``subset`` (e.g. heldout_engine)
    condition: str = ""                     # the manifest's ``condition`` (anechoic, reverb)
    rt60_s: str = ""                        # the manifest's ``rt60_s`` (empty when anechoic)
    direct: np.ndarray | None = None        # (K, L) direct-path images at channel 0, if any
