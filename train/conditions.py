"""Training conditions (paper §3.3): which labels, which α, how much of the training set.

``params.yaml`` holds them grouped by label kind,
``train_conditions: {gt: {name: {fraction}}, spatial: {name: {teacher, alpha, fraction}}}``,
so that
DVC's ``foreach`` makes one ``train_gt@<name>`` / ``train_spatial@<name>`` stage per entry
(ground-truth models then do not depend on the spatial shards) and a user adds a condition
without touching ``dvc.yaml``. Names are DVC parameter paths and folder names, so they may
hold letters, digits, ``_`` and ``-`` only (a dot would split the parameter path); the
settings are validated by :mod:`bootsep.config`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bootsep.config import LABELS_OF, TrainConditions

OVERRIDES = ("epochs", "lr_schedule", "utterance_weighting")   # train settings a condition may set


@dataclass(frozen=True)
class Condition:
    """One training condition.

    Attributes:
        name: stage/model name, e.g. ``alpha_1``.
        labels: ``gt`` (ideal binary labels from the source images, the upper bound) or
            ``spatial`` (hard pseudo-labels of a spatial teacher, §2.1).
        alpha: exponent of eq. 7; ignored for ``gt`` (pure magnitude weights, as α = 0).
        fraction: share of the training mixtures used (``gt_subset``: 0.05, the paper's 1k of 20k).
        teacher: the spatial teacher (an entry of ``spatial.teachers``) of a ``spatial``
            condition; None for ``gt``.
        warm_start: a self-training round's student only: start from the weights of the
            model that relabelled the round (its ``self_training.rounds`` entry's student)
            instead of the shared random initialisation.
        epochs: this condition's epochs (None: ``train.epochs``).
        lr_schedule: this condition's learning-rate schedule (None: ``train.lr_schedule``).
        utterance_weighting: this condition's (None: ``train.utterance_weighting``).
    """

    name: str
    labels: str
    alpha: float = 0.0
    fraction: float = 1.0
    teacher: str | None = None
    warm_start: bool = False
    epochs: int | None = None
    lr_schedule: str | None = None
    utterance_weighting: str | None = None

    @property
    def uses_confidence(self) -> bool:
        return self.labels == "spatial" and self.alpha != 0

    def to_dict(self) -> dict:
        return asdict(self)


def conditions(settings: TrainConditions) -> list[Condition]:
    """The loaded conditions of ``train_conditions`` (validated by :mod:`bootsep.config`),
    ground-truth ones first (the order of Table 1)."""
    out = []
    for name, group, entry in settings.entries():
        own = {k: getattr(entry, k) for k in OVERRIDES}
        if LABELS_OF[group] == "gt":
            out.append(Condition(name, "gt", 0.0, entry.fraction, **own))
        else:
            out.append(Condition(name, "spatial", entry.alpha, entry.fraction, entry.teacher,
                                 warm_start=group == "rounds" and entry.warm_start, **own))
    return out


def condition_names(settings: TrainConditions) -> list[str]:
    """Every loaded training condition's name, ground-truth ones first."""
    return [name for name, _, _ in settings.entries()]
