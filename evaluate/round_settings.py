"""The settings of a self-training round that ``bootsep separate`` needs to repeat its
relabelling on new audio: written by the evaluate stage into ``ensemble.json`` (an entry whose
teacher is a round), read by :mod:`bootsep.separate.rounds`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from bootsep.errors import BootsepError

KEEP_SCORES = ("confidence", "fit_gain")     # keep_confident's candidates, in order of preference


@dataclass(frozen=True)
class RoundSettings:
    """The round an ensemble entry's teacher is, as its relabel stage ran it.

    Attributes:
        name: the round (an entry of ``self_training.rounds``).
        student: the training condition whose masks are the prior (a model folder beside the
            separator's, ``data/models/<student>``).
        prior_floor, prior_weight: ``self_training.prior_floor`` / ``prior_weight``.
        keep_score: a :data:`KEEP_SCORES` member.
        keep_at: the base teacher's fit is kept where the score is at least this (None: the
            round relabels every mixture).
    """

    name: str
    student: str
    prior_floor: float
    prior_weight: float
    keep_score: str = "confidence"
    keep_at: float | None = None

    @classmethod
    def from_entry(cls, data, path: Path, key: str) -> RoundSettings:
        """From ``ensemble.json``'s ``models.<key>.round`` (one-line errors naming ``path``)."""
        where = f"ensemble file's models.{key}.round"
        if not isinstance(data, dict):
            raise BootsepError(f"{where} is {data!r}; expected a mapping", path)
        try:
            out = cls(str(data["name"]), str(data["student"]), float(data["prior_floor"]),
                      float(data["prior_weight"]), str(data["keep_score"]),
                      None if data["keep_at"] is None else float(data["keep_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise BootsepError(f"{where} is unusable ({exc.__class__.__name__}: {exc}); expected "
                               "name, student, prior_floor, prior_weight, keep_score and "
                               "keep_at (rerun the evaluate stage)", path) from exc
        if out.keep_score not in KEEP_SCORES or not 0 <= out.prior_floor <= 1 \
                or not math.isfinite(out.prior_weight) or out.prior_weight < 0 \
                or (out.keep_at is not None and math.isnan(out.keep_at)):
            raise BootsepError(f"{where} is {data!r}; expected keep_score one of "
                               f"{', '.join(KEEP_SCORES)}, prior_floor in [0, 1], a finite "
                               "prior_weight >= 0", path)
        return out

    def as_dict(self) -> dict:
        """JSON-ready (``ensemble.json``'s entry ``round``), the inverse of :meth:`from_entry`."""
        return asdict(self)


def round_entry(name: str, attrs: dict) -> dict:
    """The ``round`` of an ``ensemble.json`` entry whose teacher is round ``name``, from the
    attributes its relabel stage wrote into the round's spatial shards (student, prior floor
    and weight, keep score and threshold, ``inf`` where nothing is kept)."""
    keep_at = float(attrs["keep_at"])
    return RoundSettings(name, str(attrs["student"]), float(attrs["prior_floor"]),
                         float(attrs["prior_weight"]), str(attrs["keep_score"]),
                         keep_at if math.isfinite(keep_at) else None).as_dict()
