"""Training conditions (paper §3.3): which labels, which α, how much of the training set.

``params.yaml`` holds them as a mapping ``train_conditions: {name: {labels, alpha, fraction}}``
so that DVC's ``foreach`` makes one ``train@<name>`` stage per entry and a user adds a
condition without touching ``dvc.yaml``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bootsep.pipeline.errors import BootsepError
from bootsep.pipeline.params import get

LABEL_KINDS = ("gt", "spatial")


@dataclass(frozen=True)
class Condition:
    """One training condition.

    Attributes:
        name: stage/model name, e.g. ``alpha_1``.
        labels: ``gt`` (ideal binary labels from the source images, the upper bound) or
            ``spatial`` (hard GMM pseudo-labels, §2.1).
        alpha: exponent of eq. 7; ignored for ``gt`` (pure magnitude weights, as α = 0).
        fraction: share of the training mixtures used (``gt_subset``: 0.05, the paper's 1k of 20k).
    """

    name: str
    labels: str
    alpha: float = 0.0
    fraction: float = 1.0

    @property
    def uses_confidence(self) -> bool:
        return self.labels == "spatial" and self.alpha != 0

    def to_dict(self) -> dict:
        return asdict(self)


def condition_from_params(params: dict, name: str) -> Condition:
    """The condition ``name`` of ``train_conditions``, validated (one-line errors)."""
    where = params.get("_path", "params.yaml")
    table = get(params, "train_conditions")
    if name not in table:
        raise BootsepError(f"no training condition '{name}' in train_conditions "
                           f"(have: {', '.join(table)})", where)
    entry = dict(table[name] or {})
    unknown = set(entry) - {"labels", "alpha", "fraction"}
    if unknown:
        raise BootsepError(f"train_conditions.{name}: unknown key(s) {', '.join(sorted(unknown))}", where)
    labels = entry.get("labels", "spatial")
    if labels not in LABEL_KINDS:
        raise BootsepError(f"train_conditions.{name}.labels is '{labels}', expected gt or spatial", where)
    try:
        alpha = float(entry.get("alpha", 0.0))
        fraction = float(entry.get("fraction", 1.0))
    except (TypeError, ValueError):
        raise BootsepError(f"train_conditions.{name}: alpha and fraction must be numbers", where) from None
    if not alpha >= 0:
        raise BootsepError(f"train_conditions.{name}.alpha is {alpha}; α must be >= 0 (eq. 7)", where)
    if not 0 < fraction <= 1:
        raise BootsepError(f"train_conditions.{name}.fraction is {fraction}; must be in (0, 1]", where)
    return Condition(name, labels, alpha, fraction)
