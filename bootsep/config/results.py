"""``evaluate``, ``report`` and ``realcheck``: scoring, the report and the real-recordings
check."""

from __future__ import annotations

from bootsep.config.checks import (
    ENSEMBLE_ENTRY,
    NAME,
    Choice,
    Int,
    ListOf,
    MapOf,
    Maybe,
    Nested,
    NullOr,
    Num,
    Pattern,
    Text,
    _p,
)
from bootsep.config.section import Section, section

KMEANS_WEIGHTS = ("none", "magnitude")   # evaluate.kmeans_weight (evaluate/inference.py)


@section
class EvaluateSettings(Section):
    """``evaluate`` (paper §3.3)."""

    kmeans_threshold_db: float = _p(Num())
    kmeans_seed: int = _p(Int(0))
    # soft K-means masks exp(-beta |v - mu_k|^2), normalised over k; null: binary (the paper's,
    # and the default of params files that predate the key)
    mask_beta: float | None = _p(NullOr(Num(0, lo_open=True)), default=None)
    # each bin's weight in K-means: none (equal: the paper's, and the default of params files
    # that predate the key) | magnitude (|X|, as the DC loss weights it)
    kmeans_weight: str = _p(Choice(*KMEANS_WEIGHTS), default="none")
    batch_size: int = _p(Int(1))
    # the bootstrapped models whose ensembles with a spatial teacher are measured (§3.3):
    # 'model' (its own teacher) or 'model+teacher' (another one, e.g. a stereo-pair teacher)
    ensemble_models: tuple = _p(ListOf(Text(ENSEMBLE_ENTRY.pattern, "a training condition's "
                                            "name, or 'model+teacher'")))
    confidence_percentile: float = _p(Num(0, 100))
    # per-bin ensemble: candidates for the probability that the model's label of a bin is
    # right (each >= 1/K); the evaluate stage picks one per model on the validation split
    perbin_trust: tuple = _p(ListOf(Num(0, 1)))
    random_seed: int = _p(Int(0))
    examples: int = _p(Int(0))


@section
class ReportSettings(Section):
    ci_level: float = _p(Num(0, 1, lo_open=True, hi_open=True))


@section
class RealcheckSet(Section):
    """A folder of real speech (an entry of ``realcheck.sets``), mixed within itself: two
    recordings of different groups (speakers) per mixture. ``group``: a regular expression
    whose one capturing group, searched in a recording's path below ``root``, names its group
    (recordings it does not match are not used); null: the first folder below the root, or
    the file's own name at the top."""

    root: str = _p(Text(expected="a folder path"))
    pairs: int | None = _p(Maybe(Int(1)))
    group: str | None = _p(Maybe(Pattern()), default=None)


@section
class RealcheckSettings(Section):
    """``realcheck``: real recordings mixed two at a time as the corpus mixes, scored by trained
    models (a check only, never trained on: stages/s10_realcheck.py)."""

    sets: dict = _p(MapOf(Nested(RealcheckSet), "{root, pairs, group}", min_len=1))
    raw_sample_rate: int = _p(Int(1))
    models: tuple = _p(ListOf(Text(NAME.pattern, "the name of a training condition")))
    teachers: tuple = _p(ListOf(Text(NAME.pattern, "the name of an entry of spatial.teachers"),
                                min_len=0))
    seed: int = _p(Int(0))
    min_seconds: float = _p(Num(0))

