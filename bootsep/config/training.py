"""``model``, ``train`` and ``train_conditions``: the student network, how it is trained and
on which labels."""

from __future__ import annotations

from bootsep.config.checks import (
    NAME,
    Choice,
    Either,
    Flag,
    Int,
    MapOf,
    Maybe,
    Nested,
    NullOr,
    Num,
    Pair,
    Text,
    _p,
)
from bootsep.config.section import Section, section

INPUT_NORMS = ("global", "utterance")             # model.input_norm (bootsep.train.model)
LR_SCHEDULES = ("plateau", "cosine")              # train.lr_schedule (bootsep.train.schedule)
UTTERANCE_WEIGHTINGS = ("quadratic", "linear")    # train.utterance_weighting (train/weights.py)
LABEL_KINDS = ("gt", "spatial", "rounds")   # the groups of train_conditions
LABELS_OF = {"gt": "gt", "spatial": "spatial", "rounds": "spatial"}   # group -> kind of labels


@section
class ModelSize(Section):
    hidden: int = _p(Int(1))
    num_layers: int = _p(Int(1))
    embedding_dim: int = _p(Int(1))


@section
class ModelSettings(Section):
    """``model`` (paper §3.1): ``size`` names one entry of ``sizes``."""

    size: str = _p(Text(NAME.pattern, "the name of an entry of model.sizes"))
    sizes: dict = _p(MapOf(Nested(ModelSize), "{hidden, num_layers, embedding_dim}", min_len=1))
    dropout: float = _p(Num(0, 1, hi_open=True))
    input_norm: str = _p(Choice(*INPUT_NORMS), default="global")
    frame_stride: int = _p(Int(1), default=1)

    def validate(self, where):
        if self.loaded("size", "sizes") and self.size not in self.sizes:
            where.fail(self.key("size"), self.size,
                       f"one of {self.key('sizes')}: {', '.join(self.sizes)}")

    @property
    def shape(self) -> ModelSize:
        return self.sizes[self.size]


@section
class TrainSettings(Section):
    """``train`` (paper §3.2); the fields of :class:`bootsep.train.loop.TrainConfig`."""

    seed: int = _p(Int(0))
    epochs: int = _p(Int(1))
    batch_size: int = _p(Int(1))
    max_frames: int | None = _p(Maybe(Int(1)))
    lr: float = _p(Num(0, lo_open=True))
    lr_patience: int = _p(Int(0))
    lr_factor: float = _p(Num(0, 1, lo_open=True, hi_open=True))
    lr_schedule: str = _p(Choice(*LR_SCHEDULES), default="plateau")
    grad_clip: float = _p(Num(0))
    loader_workers: int | str = _p(Either(Int(0), Choice("auto")))
    shuffle_buffer: int = _p(Int(1))
    bucket: bool = _p(Flag())
    torch_threads: int | str = _p(Either(Int(1), Choice("auto")))
    device: str = _p(Text(r"auto|cpu|cuda(:[0-9]+)?", "one of auto, cpu, cuda, cuda:N"))
    amp: bool = _p(Flag())
    max_batches_per_epoch: int | None = _p(Maybe(Int(1)))
    num_sources: int = _p(Int(1))
    augment_warp: tuple = _p(Pair(Num(0.5, 2.0)), default=(1.0, 1.0))
    augment_tilt_db: float = _p(Num(0, 40), default=0.0)
    utterance_weighting: str = _p(Choice(*UTTERANCE_WEIGHTINGS), default="quadratic")
    batch_parts: int = _p(Int(1), default=1)


@section
class ConditionSchedule(Section):
    """A training condition's own ``epochs``, ``lr_schedule`` and ``utterance_weighting``
    (null: ``train``'s)."""

    epochs: int | None = _p(NullOr(Int(1)), default=None)
    lr_schedule: str | None = _p(NullOr(Choice(*LR_SCHEDULES)), default=None)
    utterance_weighting: str | None = _p(NullOr(Choice(*UTTERANCE_WEIGHTINGS)), default=None)


@section
class GtCondition(ConditionSchedule):
    """A ground-truth condition: ideal binary labels on a ``fraction`` of the mixtures."""

    fraction: float = _p(Num(0, 1, lo_open=True))


@section
class SpatialCondition(ConditionSchedule):
    """A bootstrapped condition: the labels of spatial teacher ``teacher`` (an entry of
    ``spatial.teachers``) weighted by its C^alpha (eq. 7)."""

    teacher: str = _p(Text(NAME.pattern, "the name of an entry of spatial.teachers"))
    alpha: float = _p(Num(0))
    fraction: float = _p(Num(0, 1, lo_open=True))


@section
class RoundCondition(SpatialCondition):
    """A self-training round's student: the labels of round ``teacher`` (an entry of
    ``self_training.rounds``) weighted by its C^alpha; optionally started from the round's
    student (``warm_start``: iterative pseudo-labelling, Xu et al. 2020)."""

    warm_start: bool = _p(Flag(), default=False)


@section
class TrainConditions(Section):
    """``train_conditions``: ``{gt: {name: {fraction}}, spatial: {name: {teacher, alpha,
    fraction}}, rounds: {name: {teacher, alpha, fraction}}}``; ``rounds`` holds the students
    of self-training rounds (their teacher is an entry of ``self_training.rounds``)."""

    gt: dict = _p(MapOf(Nested(GtCondition), "{fraction}"))
    spatial: dict = _p(MapOf(Nested(SpatialCondition), "{teacher, alpha, fraction}"))
    rounds: dict = _p(MapOf(Nested(RoundCondition), "{teacher, alpha, fraction}"))

    def entries(self) -> list[tuple[str, str, GtCondition | SpatialCondition]]:
        """``(name, group, settings)`` of the loaded conditions, in Table 1 order (ground
        truth, spatial teachers' students, self-training rounds' students)."""
        return [(name, group, entry) for group in LABEL_KINDS if self.loaded(group)
                for name, entry in getattr(self, group).items()]

    def validate(self, where):
        if self.loaded(*LABEL_KINDS):
            seen: dict[str, str] = {}
            for group in LABEL_KINDS:
                for name in getattr(self, group):
                    if name in seen:
                        where.error(f"train_conditions: '{name}' appears under both "
                                    f"{seen[name]} and {group}")
                    seen[name] = group

