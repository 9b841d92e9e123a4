"""Reading ``params.yaml``: one typed, validated settings object per section, in one place.

Every key of ``params.yaml`` is declared in this package once, with its type, range or allowed
values (the ``*Settings`` dataclasses, one per section: ``corpus``, ``features`` (stft, shards,
dask), ``spatial`` (with self_training and confidence), ``training`` (model, train,
train_conditions) and ``results`` (evaluate, report, realcheck); ``checks`` and ``section``
are the machinery, ``load`` the file and its loaders). :func:`load_config` reads the file
and checks every key it loads; any problem is one line that names the file, the dotted key,
the value and what is allowed::

    params.yaml: train.epochs is 'ten'; expected an integer >= 1

A missing key is an error (no default lives in code: every default is in ``params.yaml``),
an unknown key too (a typo), and ``true``/``false`` never pass as numbers.

A stage loads only the keys it declares (``PARAMS + RUN_PARAMS``, e.g. ``"stft"`` or
``"train.seed"``): a bad value elsewhere does not stop it, and reading a key it did not
declare raises ``AttributeError``.

Free strings (any non-empty text is accepted, nothing to check it against):
``corpus.wsj0-2mix-spatialized.root``, ``corpus.folder.root`` and ``realcheck.root`` (folder
paths, checked when the corpus is built or the recordings read) and the values of
``dask.worker_env`` (environment variables). Every other string is one of a fixed set
(``stft.window``, ``corpus.kind``, ...), a name defined elsewhere in the file (``model.size``,
``evaluate.ensemble_models``) or a pattern (``train.device``, ``dask.address``).

Imports only the standard library and PyYAML (the package core).
"""

from bootsep.config.checks import (
    ENSEMBLE_ENTRY,
    ENSEMBLE_JOIN,
    ENV_NAME,
    NAME,
    NOT_LOADED,
    SPLITS,
    Check,
    Choice,
    Either,
    EnvValue,
    Flag,
    Int,
    ListOf,
    MapOf,
    Maybe,
    Nested,
    NullOr,
    Num,
    Pair,
    Scalar,
    Splits,
    Text,
)
from bootsep.config.corpus import (
    CORPUS_KINDS,
    TTS_ENGINES,
    ArraySettings,
    AugmentSettings,
    CorpusSettings,
    FolderSettings,
    NoiseSettings,
    RoomSizeSettings,
    RoomsSettings,
    TtsSettings,
    Wsj0Settings,
    sabine_absorption,
)
from bootsep.config.features import (
    SCHEDULERS,
    WINDOWS,
    DaskSettings,
    ShardsSettings,
    StftSettings,
)
from bootsep.config.load import (
    DEFAULT_PARAMS,
    FREE_STRINGS,
    Config,
    condition_group,
    load_config,
    parse_config,
    parse_mapping,
    parse_section,
    parse_value,
    read_params,
    selection,
    teacher_entries,
    teacher_method,
)
from bootsep.config.results import (
    EvaluateSettings,
    RealcheckSettings,
    ReportSettings,
)
from bootsep.config.section import (
    Section,
    section,
)
from bootsep.config.spatial import (
    BEAMFORM_METHODS,
    CHANNEL_SETS,
    DEREVERB_METHODS,
    TEACHER_METHODS,
    BeamformSettings,
    CacgmmTeacherSettings,
    ConfidenceSettings,
    DelayTeacherSettings,
    IvaTeacherSettings,
    PaperTeacherSettings,
    RoundEntry,
    SelfTrainingSettings,
    SpatialSettings,
    TeacherEntry,
    TeacherStft,
    WpeSettings,
)
from bootsep.config.training import (
    INPUT_NORMS,
    LABEL_KINDS,
    LABELS_OF,
    LR_SCHEDULES,
    ConditionSchedule,
    GtCondition,
    ModelSettings,
    ModelSize,
    RoundCondition,
    SpatialCondition,
    TrainConditions,
    TrainSettings,
)

__all__ = [
    "BEAMFORM_METHODS",
    "CHANNEL_SETS",
    "CORPUS_KINDS",
    "DEFAULT_PARAMS",
    "DEREVERB_METHODS",
    "ENSEMBLE_ENTRY",
    "ENSEMBLE_JOIN",
    "ENV_NAME",
    "FREE_STRINGS",
    "INPUT_NORMS",
    "LABELS_OF",
    "LABEL_KINDS",
    "LR_SCHEDULES",
    "NAME",
    "NOT_LOADED",
    "SCHEDULERS",
    "SPLITS",
    "TEACHER_METHODS",
    "TTS_ENGINES",
    "WINDOWS",
    "ArraySettings",
    "AugmentSettings",
    "BeamformSettings",
    "CacgmmTeacherSettings",
    "Check",
    "Choice",
    "ConditionSchedule",
    "ConfidenceSettings",
    "Config",
    "CorpusSettings",
    "DaskSettings",
    "DelayTeacherSettings",
    "Either",
    "EnvValue",
    "EvaluateSettings",
    "Flag",
    "FolderSettings",
    "GtCondition",
    "Int",
    "IvaTeacherSettings",
    "ListOf",
    "MapOf",
    "Maybe",
    "ModelSettings",
    "ModelSize",
    "Nested",
    "NoiseSettings",
    "NullOr",
    "Num",
    "Pair",
    "PaperTeacherSettings",
    "RealcheckSettings",
    "ReportSettings",
    "RoomSizeSettings",
    "RoomsSettings",
    "RoundCondition",
    "RoundEntry",
    "Scalar",
    "Section",
    "SelfTrainingSettings",
    "ShardsSettings",
    "SpatialCondition",
    "SpatialSettings",
    "Splits",
    "StftSettings",
    "TeacherEntry",
    "TeacherStft",
    "Text",
    "TrainConditions",
    "TrainSettings",
    "TtsSettings",
    "WpeSettings",
    "Wsj0Settings",
    "condition_group",
    "load_config",
    "parse_config",
    "parse_mapping",
    "parse_section",
    "parse_value",
    "read_params",
    "sabine_absorption",
    "section",
    "selection",
    "teacher_entries",
    "teacher_method",
]
