"""What evaluation passes around: the separated estimates of one mixture, and approach names.

Pure data (numpy only), so the report stage reads results without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPATIAL = "spatial"


@dataclass
class MixtureEstimates:
    id: str
    mixture: np.ndarray                     # (L,) channel 0
    references: np.ndarray | None           # (K, L) source images at channel 0
    mean_confidence: float
    estimates: dict[str, np.ndarray] = field(default_factory=dict)   # approach -> (K, L)
    logmag_db: np.ndarray | None = None     # (T, F), kept for example figures
    masks: dict[str, np.ndarray] = field(default_factory=dict)       # approach -> (K, T, F)
