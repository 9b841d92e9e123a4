"""What evaluation passes around: the separated estimates of one mixture, and approach names.

Pure data (numpy only), so the report stage reads results without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPATIAL_PREFIX = "spatial_"


def teacher_approach(teacher: str) -> str:
    """The approach name of spatial teacher ``teacher`` (its masks on channel 0)."""
    return SPATIAL_PREFIX + teacher


def approach_teacher(approach: str) -> str | None:
    """The teacher of a spatial approach name, None for any other approach."""
    return approach[len(SPATIAL_PREFIX):] if approach.startswith(SPATIAL_PREFIX) else None


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
