"""Learning-rate schedules of a training run, as pure functions of the batch position.

``plateau`` is the paper's (§3.2: halve the rate after ``lr_patience`` epochs without
improvement; torch's ``ReduceLROnPlateau`` in :mod:`bootsep.train.loop`). ``cosine`` anneals
the rate from ``lr`` to 0 over the run, batch by batch (Loshchilov & Hutter, "SGDR", ICLR
2017, without restarts): a run of a few epochs ends at a small rate instead of 1e-3, which
the plateau rule never reaches in so few epochs. Being a function of the batch position
alone, it needs no state in the checkpoint, and a resumed run gets the same rates.
"""

from __future__ import annotations

import math


def cosine_lr(base: float, progress: float) -> float:
    """The rate at ``progress`` in [0, 1] (the run's fraction done: epoch plus the epoch's
    batch fraction, over epochs): ``base * (1 + cos(pi * progress)) / 2``, ``base`` at the start,
    0 at the end."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"training progress {progress} outside [0, 1]")
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))
