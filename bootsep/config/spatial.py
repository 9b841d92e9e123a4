"""``spatial``, ``self_training`` and ``confidence``: the teachers, the self-training rounds
and the confidence measure."""

from __future__ import annotations

from bootsep.config.checks import (
    NAME,
    SPLITS,
    Choice,
    Flag,
    Int,
    MapOf,
    Maybe,
    Nested,
    NullOr,
    Num,
    Text,
    _p,
)
from bootsep.config.section import Section, section


def fitted_splits(fit_train: bool) -> tuple[str, ...]:
    """``SPLITS``, less ``train`` unless ``fit_train`` (a teacher's or round's splits)."""
    return SPLITS if fit_train else tuple(s for s in SPLITS if s != "train")


TEACHER_METHODS = ("paper", "delay", "cacgmm", "iva")
CHANNEL_SETS = ("pair", "all")
DEREVERB_METHODS = ("none", "wpe")
BEAMFORM_METHODS = ("none", "mvdr")


def _check_window_hop(section, where) -> None:
    """A section's ``window_ms`` must be a whole number of its ``hop_ms``."""
    if section.loaded("window_ms", "hop_ms"):
        ratio = section.window_ms / section.hop_ms
        if ratio < 1 or abs(ratio - round(ratio)) > 1e-9:
            where.fail(section.key("hop_ms"), section.hop_ms, f"a hop that divides the window "
                       f"({section.window_ms:g} ms) a whole number of times")


@section
class TeacherStft(Section):
    """A teacher's own STFT (``spatial.teachers.<name>.stft``): window and hop in ms, the
    window a whole number of hops; its labels are mapped onto the student's grid."""

    window_ms: float = _p(Num(0, lo_open=True))
    hop_ms: float = _p(Num(0, lo_open=True))

    def validate(self, where):
        _check_window_hop(self, where)


@section
class TeacherEntry(Section):
    """One entry of ``spatial.teachers``: a method, the microphones it listens to and, optional,
    its own STFT (null: the student's), dereverberation before the fit (``wpe``:
    ``spatial.wpe``) and masks refined by beamforming after it (``mvdr``:
    ``spatial.beamform``). ``fit_train: false`` fits it on the valid and test splits only: a
    teacher no student learns from skips the training mixtures (its fit there is most of its
    cost); the training conditions may not name it. ``wpe_iterations`` (with ``dereverb:
    wpe``) replaces ``spatial.wpe.iterations`` for this teacher (null: the shared value)."""

    method: str = _p(Choice(*TEACHER_METHODS))
    channels: str = _p(Choice(*CHANNEL_SETS))
    stft: TeacherStft | None = _p(NullOr(Nested(TeacherStft)), default=None)
    dereverb: str = _p(Choice(*DEREVERB_METHODS), default="none")
    beamform: str = _p(Choice(*BEAMFORM_METHODS), default="none")
    fit_train: bool = _p(Flag(), default=True)
    wpe_iterations: int | None = _p(NullOr(Int(1)), default=None)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the teacher is fitted on (``SPLITS``, less ``train`` without
        ``fit_train``)."""
        return fitted_splits(self.fit_train)

    def validate(self, where):
        if self.loaded("method", "channels") and self.method == "paper" \
                and self.channels != "pair":
            where.fail(self.key("channels"), self.channels,
                       "pair (the paper's teacher is a stereo-pair method: eq. 1)")
        if self.loaded("method", "stft", "dereverb") and self.method == "paper" \
                and (self.stft is not None or self.dereverb != "none"):
            where.fail(self.key("stft" if self.stft is not None else "dereverb"),
                       self.stft.as_dict() if self.stft is not None else self.dereverb,
                       "null / none for the paper's teacher (its features are the student's)")
        if self.loaded("wpe_iterations", "dereverb") and self.wpe_iterations is not None \
                and self.dereverb != "wpe":
            where.fail(self.key("wpe_iterations"), self.wpe_iterations,
                       "null unless the teacher's dereverb is wpe (it overrides "
                       "spatial.wpe.iterations)")


@section
class WpeSettings(Section):
    """``spatial.wpe``: weighted prediction error dereverberation (nara-wpe) of a teacher's
    multichannel STFT before its fit; taps and delay in ms, turned into frames of its hop."""

    taps_ms: float = _p(Num(0, lo_open=True))
    delay_ms: float = _p(Num(0, lo_open=True))
    iterations: int = _p(Int(1))
    psd_context: int = _p(Int(0))
    power_floor_db: float = _p(Num(hi=0))
    ridge: float = _p(Num(0))


@section
class BeamformSettings(Section):
    """``spatial.beamform``: mask-based MVDR after a teacher's fit
    (pipeline/teachers/beamform.py): covariances and filters on a long STFT (window and hop
    in ms), ``iterations`` passes, the noise covariance loaded with ``loading`` times its mean
    diagonal."""

    window_ms: float = _p(Num(0, lo_open=True))
    hop_ms: float = _p(Num(0, lo_open=True))
    iterations: int = _p(Int(1))
    loading: float = _p(Num(0))

    def validate(self, where):
        _check_window_hop(self, where)


@section
class PaperTeacherSettings(Section):
    """``spatial.paper`` (paper §2.1, eqs. 1-3): IPD -> PCA -> GMM on bins above tau."""

    tau_db: float = _p(Num())
    max_iter: int = _p(Int(1))
    tol: float = _p(Num(0))
    reg_covar: float = _p(Num(0))


@section
class DelayTeacherSettings(Section):
    """``spatial.delay``: tied-delay wrapped-phase mixture (pipeline/teachers/delay.py)."""

    threshold_db: float = _p(Num(hi=0))
    weight_power: float = _p(Num(0))
    max_delay_ms: float = _p(Num(0, lo_open=True))
    azimuth_step_deg: float = _p(Num(0, 90, lo_open=True))
    min_separation_deg: float = _p(Num(0))
    outlier_prior: float = _p(Num(0, 1, lo_open=True, hi_open=True))
    kappa_init: float = _p(Num(0, lo_open=True))
    kappa_max: float = _p(Num(0, lo_open=True))
    max_iter: int = _p(Int(1))
    tol: float = _p(Num(0))
    min_source_share: float = _p(Num(0, 1, hi_open=True))


@section
class CacgmmTeacherSettings(Section):
    """``spatial.cacgmm``: per-frequency complex angular central Gaussian mixture over every
    channel (pipeline/teachers/cacgmm.py), initialised from the delay model's posteriors
    (``init``: that model's settings; params.yaml shares them with ``spatial.delay``)."""

    iterations: int = _p(Int(0))
    priors: str = _p(Choice("frequency", "mixture"))
    eps: float | None = _p(Maybe(Num(0, lo_open=True)))
    init: DelayTeacherSettings = _p(Nested(DelayTeacherSettings))


@section
class IvaTeacherSettings(Section):
    """``spatial.iva``: pyroomacoustics' AuxIVA, its outputs as ratio masks
    (pipeline/teachers/iva.py); the fit term uses the cACG family (``cacgmm.*`` settings of
    the fit bins)."""

    n_iter: int = _p(Int(1))
    model: str = _p(Choice("gauss", "laplace"))
    mask_power: float = _p(Num(0, lo_open=True))
    overdetermined: str = _p(Choice("pca", "overiva"))
    threshold_db: float = _p(Num(hi=0))
    min_frames: int = _p(Int(1))


@section
class SpatialSettings(Section):
    """``spatial``: the teachers (``teachers``: name -> method and channels) and each
    method's settings; every teacher is one DVC stage with its own shards."""

    teachers: dict = _p(MapOf(Nested(TeacherEntry), "{method, channels}", min_len=1))
    num_components: int = _p(Int(2))
    paper: PaperTeacherSettings = _p(Nested(PaperTeacherSettings))
    delay: DelayTeacherSettings = _p(Nested(DelayTeacherSettings))
    cacgmm: CacgmmTeacherSettings = _p(Nested(CacgmmTeacherSettings))
    iva: IvaTeacherSettings = _p(Nested(IvaTeacherSettings))
    wpe: WpeSettings = _p(Nested(WpeSettings))
    beamform: BeamformSettings = _p(Nested(BeamformSettings))


@section
class RoundEntry(Section):
    """One self-training round: spatial teacher ``teacher`` refitted with the masks of model
    ``student`` (a training condition) as a per-bin prior. ``fit_train: false`` relabels the
    valid and test splits only, as a teacher's: a round no student learns from (its relabelled
    teacher's Table 1 rows) skips the training mixtures."""

    teacher: str = _p(Text(NAME.pattern, "the name of an entry of spatial.teachers"))
    student: str = _p(Text(NAME.pattern, "the name of a training condition"))
    fit_train: bool = _p(Flag(), default=True)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits the round relabels (``SPLITS``, less ``train`` without ``fit_train``)."""
        return fitted_splits(self.fit_train)


@section
class SelfTrainingSettings(Section):
    """``self_training`` (issue 21): rounds of relabelling with a student's masks as prior."""

    rounds: dict = _p(MapOf(Nested(RoundEntry), "{teacher, student}"))
    prior_floor: float = _p(Num(0, 1, lo_open=True, hi_open=True))
    prior_weight: float = _p(Num(0))
    keep_confident: bool = _p(Flag(), default=False)


@section
class ConfidenceSettings(Section):
    """``confidence`` (paper §2.2, eq. 5's Monte Carlo)."""

    jsd_samples: int = _p(Int(10))
    seed: int = _p(Int(0))

