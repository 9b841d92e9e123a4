"""Training conditions (paper §3.3): which labels, which α, how much of the training set.

``params.yaml`` holds them grouped by label kind,
``train_conditions: {gt: {name: {fraction}}, spatial: {name: {alpha, fraction}}}``, so that
DVC's ``foreach`` makes one ``train_gt@<name>`` / ``train_spatial@<name>`` stage per entry
(ground-truth models then do not depend on the spatial shards) and a user adds a condition
without touching ``dvc.yaml``. Names are DVC parameter paths and folder names, so they may
hold letters, digits, ``_`` and ``-`` only (a dot would split the parameter path).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from bootsep.config import get
from bootsep.errors import BootsepError
from bootsep.pipeline.confidence import check_alpha

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


NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def condition_table(params: dict) -> dict[str, tuple[str, dict]]:
    """``{name: (labels, entry)}`` of every condition, in params order; checks the layout."""
    where = params.get("_path", "params.yaml")
    groups = get(params, "train_conditions")
    if not isinstance(groups, dict) or set(groups) - set(LABEL_KINDS):
        raise BootsepError("train_conditions must map gt and/or spatial to {name: {...}} "
                           f"(found keys: {', '.join(map(str, groups))})", where)
    table: dict[str, tuple[str, dict]] = {}
    for labels in LABEL_KINDS:
        for name, entry in (groups.get(labels) or {}).items():
            if not NAME.match(str(name)):
                raise BootsepError(f"train_conditions.{labels}: condition name '{name}' may only hold "
                                   "letters, digits, _ and - (it is a DVC parameter path)", where)
            if name in table:
                raise BootsepError(f"train_conditions: '{name}' appears under both gt and spatial", where)
            table[name] = (labels, dict(entry or {}))
    return table


def condition_names(params: dict) -> list[str]:
    """Every training condition, ground-truth ones first (the order of Table 1)."""
    return list(condition_table(params))


def condition_from_params(params: dict, name: str) -> Condition:
    """The condition ``name`` of ``train_conditions``, validated (one-line errors)."""
    where = params.get("_path", "params.yaml")
    table = condition_table(params)
    if name not in table:
        raise BootsepError(f"no training condition '{name}' in train_conditions "
                           f"(have: {', '.join(table)})", where)
    labels, entry = table[name]
    unknown = set(entry) - ({"fraction"} if labels == "gt" else {"alpha", "fraction"})
    if unknown:
        raise BootsepError(f"train_conditions.{labels}.{name}: unknown key(s) {', '.join(sorted(unknown))}", where)
    try:
        alpha = float(entry.get("alpha", 0.0))
        fraction = float(entry.get("fraction", 1.0))
    except (TypeError, ValueError):
        raise BootsepError(f"train_conditions.{name}: alpha and fraction must be numbers", where) from None
    alpha = check_alpha(alpha, f"train_conditions.{name}.alpha", where)
    if not 0 < fraction <= 1:
        raise BootsepError(f"train_conditions.{name}.fraction is {fraction}; must be in (0, 1]", where)
    return Condition(name, labels, alpha, fraction)
