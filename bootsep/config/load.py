"""Reading ``params.yaml`` whole or in part: the file's sections (:class:`Config`), the
cross-section checks and the loaders."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from bootsep.config.checks import (
    _ALL,
    _MISSING,
    ENSEMBLE_JOIN,
    Check,
    Nested,
    _join,
    _keys_text,
    _p,
    _show,
    _unknown,
    _Where,
)
from bootsep.config.corpus import CorpusSettings
from bootsep.config.features import DaskSettings, ShardsSettings, StftSettings
from bootsep.config.results import EvaluateSettings, RealcheckSettings, ReportSettings
from bootsep.config.section import Section, section
from bootsep.config.spatial import ConfidenceSettings, SelfTrainingSettings, SpatialSettings
from bootsep.config.training import LABEL_KINDS, ModelSettings, TrainConditions, TrainSettings
from bootsep.errors import BootsepError

DEFAULT_PARAMS = "params.yaml"
FREE_STRINGS = ("corpus.wsj0-2mix-spatialized.root", "corpus.folder.root", "dask.worker_env.*",
                "realcheck.sets.*.root")


@section
class Config(Section):
    """The loaded sections of one ``params.yaml``; ``path`` is the file, ``raw`` its content
    as read (for records such as a model folder's ``params.json``, never for values)."""

    corpus: CorpusSettings = _p(Nested(CorpusSettings))
    stft: StftSettings = _p(Nested(StftSettings))
    shards: ShardsSettings = _p(Nested(ShardsSettings))
    dask: DaskSettings = _p(Nested(DaskSettings))
    spatial: SpatialSettings = _p(Nested(SpatialSettings))
    confidence: ConfidenceSettings = _p(Nested(ConfidenceSettings))
    self_training: SelfTrainingSettings = _p(Nested(SelfTrainingSettings))
    model: ModelSettings = _p(Nested(ModelSettings))
    train: TrainSettings = _p(Nested(TrainSettings))
    train_conditions: TrainConditions = _p(Nested(TrainConditions))
    evaluate: EvaluateSettings = _p(Nested(EvaluateSettings))
    report: ReportSettings = _p(Nested(ReportSettings))
    realcheck: RealcheckSettings = _p(Nested(RealcheckSettings))
    path: str = ""
    raw: dict = field(default_factory=dict)

    @classmethod
    def parse(cls, value, key, where, select=_ALL):
        if not isinstance(value, dict):
            expected = f"a mapping of sections ({_keys_text(cls.schema())})"
            if key:
                where.fail(key, value, expected)
            where.error(f"expected {expected} at the top level, found {_show(value)}")
        if select is not _ALL:   # a typo'd section name is caught by every stage
            for name in value:
                if name not in cls.schema():
                    _unknown(where, key, name, value[name], cls.schema())
        return super().parse(value, key, where, select)

    def validate(self, where):
        if self.loaded("evaluate", "train_conditions") \
                and self.evaluate.loaded("ensemble_models") \
                and self.train_conditions.loaded(*LABEL_KINDS):
            entries = {n: (g, e) for n, g, e in self.train_conditions.entries()}
            usable = [n for n, (g, _) in entries.items() if g != "gt"]
            spatial = self.spatial.teachers if self.loaded("spatial") \
                and self.spatial.loaded("teachers") else None
            rounds = self.self_training.rounds if self.loaded("self_training") \
                and self.self_training.loaded("rounds") else None
            seen = {}
            for i, entry in enumerate(self.evaluate.ensemble_models):
                key = f"evaluate.ensemble_models[{i}]"
                name, _, teacher = entry.partition(ENSEMBLE_JOIN)
                group = entries.get(name, (None, None))[0]
                if group == "gt" and not teacher:
                    where.error(f"{key} is '{name}', a ground-truth condition (no teacher to "
                                "ensemble with); expected a spatial or rounds condition, or "
                                f"'{name}+<teacher>'")
                if name not in entries:
                    where.fail(key, entry, "a spatial or rounds training condition "
                               f"({', '.join(usable) or 'none defined'}), or "
                               "'<condition>+<teacher>'")
                if teacher and spatial is not None and rounds is not None \
                        and teacher not in spatial and teacher not in rounds:
                    where.fail(key, entry, "'<condition>+<teacher>' with a teacher of "
                               f"spatial.teachers or self_training.rounds "
                               f"({', '.join([*spatial, *rounds])})")
                pair = (name, teacher or entries[name][1].teacher)
                if pair in seen:
                    where.error(f"{key}: '{entry}' is listed twice (as "
                                f"'{seen[pair]}': model {pair[0]} with teacher {pair[1]})")
                seen[pair] = entry
        if self.loaded("realcheck", "train_conditions") \
                and self.train_conditions.loaded(*LABEL_KINDS):
            names = [n for n, _, _ in self.train_conditions.entries()]
            for i, name in enumerate(self.realcheck.models):
                if name not in names:
                    where.fail(f"realcheck.models[{i}]", name,
                               f"a training condition ({', '.join(names) or 'none defined'})")
        if self.loaded("realcheck", "spatial") and self.spatial.loaded("teachers"):
            for i, name in enumerate(self.realcheck.teachers):
                if name not in self.spatial.teachers:
                    where.fail(f"realcheck.teachers[{i}]", name,
                               f"an entry of spatial.teachers ({', '.join(self.spatial.teachers)})")
        rounds = None
        if self.loaded("self_training") and self.self_training.loaded("rounds"):
            rounds = self.self_training.rounds
        if self.loaded("spatial") and self.spatial.loaded("teachers") and rounds is not None:
            teachers = self.spatial.teachers
            for name, entry in rounds.items():
                if name in teachers:
                    where.error(f"self_training.rounds.{name}: a spatial teacher has this name "
                                "(their shards would share a folder)")
                if entry.loaded("teacher") and entry.teacher not in teachers:
                    where.fail(f"self_training.rounds.{name}.teacher", entry.teacher,
                               f"an entry of spatial.teachers ({', '.join(teachers)})")
        if self.loaded("spatial", "train_conditions") and self.spatial.loaded("teachers") \
                and self.train_conditions.loaded("spatial"):
            teachers = self.spatial.teachers
            for name, entry in self.train_conditions.spatial.items():
                if entry.loaded("teacher") and entry.teacher not in teachers:
                    where.fail(f"train_conditions.spatial.{name}.teacher", entry.teacher,
                               f"an entry of spatial.teachers ({', '.join(teachers)})")
                elif entry.loaded("teacher") and teachers[entry.teacher].loaded("fit_train") \
                        and not teachers[entry.teacher].fit_train:
                    where.error(f"train_conditions.spatial.{name}.teacher is "
                                f"'{entry.teacher}', a teacher fitted without the training "
                                f"split (spatial.teachers.{entry.teacher}.fit_train: false); "
                                "set fit_train: true or name another teacher")
        if rounds is not None and self.loaded("train_conditions") \
                and self.train_conditions.loaded(*LABEL_KINDS):
            names = [n for n, _, _ in self.train_conditions.entries()]
            for name, entry in rounds.items():
                if entry.loaded("student") and entry.student not in names:
                    where.fail(f"self_training.rounds.{name}.student", entry.student,
                               f"a training condition ({', '.join(names)})")
            for name, entry in self.train_conditions.rounds.items():
                if entry.loaded("teacher") and entry.teacher not in rounds:
                    where.fail(f"train_conditions.rounds.{name}.teacher", entry.teacher,
                               f"an entry of self_training.rounds ({', '.join(rounds) or 'none'})")
                elif entry.loaded("teacher") and rounds[entry.teacher].loaded("fit_train") \
                        and not rounds[entry.teacher].fit_train:
                    where.error(f"train_conditions.rounds.{name}.teacher is '{entry.teacher}', "
                                "a round relabelled without the training split "
                                f"(self_training.rounds.{entry.teacher}.fit_train: false); set "
                                "fit_train: true or name another round")



def selection(keys: Iterable[str]) -> Any:
    """Dotted keys -> a tree ``{section: {key: ...}}`` whose leaves are "whole subtree"."""
    keys = list(keys)
    if not keys:
        return {}
    tree: dict = {}
    for dotted in keys:
        node = tree
        parts = dotted.split(".")
        for i, part in enumerate(parts):
            if node.get(part) is _ALL:
                break
            if i == len(parts) - 1:
                node[part] = _ALL
            else:
                node = node.setdefault(part, {})
    return tree


def teacher_entries(cfg: Config) -> dict[str, tuple[str, str]]:
    """Every teacher whose shards the pipeline writes, ``name -> (method, channels)``: the
    entries of ``spatial.teachers`` and the self-training rounds (their base teacher's)."""
    out = {n: (e.method, e.channels) for n, e in cfg.spatial.teachers.items()}
    for name, entry in cfg.self_training.rounds.items():
        out[name] = out[entry.teacher]
    return out


def condition_group(data: Any, condition: str, where: _Where) -> str:
    """``gt``, ``spatial`` or ``rounds``: the group of ``train_conditions`` that holds
    ``condition``."""
    groups = data.get("train_conditions", _MISSING) if isinstance(data, dict) else _MISSING
    if not isinstance(groups, dict):
        where.fail("train_conditions", groups, Nested(TrainConditions).expected)
    for labels in LABEL_KINDS:
        if not isinstance(groups.get(labels, _MISSING), dict):
            check = TrainConditions.schema()[labels][1]
            where.fail(f"train_conditions.{labels}", groups.get(labels, _MISSING), check.expected)
    found = [labels for labels in LABEL_KINDS if condition in groups[labels]]
    if not found:
        names = [str(n) for labels in LABEL_KINDS for n in groups[labels]]
        where.error(f"no training condition '{condition}' in train_conditions "
                    f"(have: {', '.join(names) or 'none'})")
    if len(found) > 1:
        where.error(f"train_conditions: '{condition}' appears under both {found[0]} and "
                    f"{found[1]}")
    return found[0]


def teacher_method(data: Any, teacher: str, at: _Where, prefix: str = "") -> str:
    """The method of spatial teacher ``teacher`` (its entry validated first)."""
    teachers = data.get("spatial", {}).get("teachers") if isinstance(data, dict) \
        and isinstance(data.get("spatial"), dict) else None
    if isinstance(teachers, dict) and teacher not in teachers:
        at.error(f"spatial.teachers has no teacher '{teacher}' "
                 f"(it has {', '.join(map(str, teachers)) or 'none'})")
    cfg = Config.parse(data, prefix, at, selection([f"spatial.teachers.{teacher}"]))
    return cfg.spatial.teachers[teacher].method


def parse_config(data: Any, keys: Iterable[str] | None = None, *, where: str = DEFAULT_PARAMS,
                 condition: str | None = None, teacher: str | None = None,
                 prefix: str = "") -> Config:
    """Validate the parsed YAML ``data`` (a dict of sections) as :func:`load_config` does.

    ``keys`` (default: every key) are dotted params keys; ``train_conditions.{group}.{condition}``
    is filled with the group that holds ``condition``, ``spatial.teachers.{key}`` and
    ``spatial.{item[method]}`` with spatial teacher ``teacher`` and its method. ``prefix`` goes
    in front of every key in messages (e.g. ``params_file`` for the copy inside a model
    folder's params.json).
    """
    at = _Where(str(where))
    if keys is None:
        select = _ALL
    else:
        filled = []
        for key in keys:
            if "{condition}" in key:
                if condition is None:
                    raise ValueError(f"params key template {key} needs a condition")
                key = key.format(group=condition_group(data, condition, at), condition=condition)
            elif "{" in key:
                if teacher is None:
                    raise ValueError(f"params key template {key} needs a teacher")
                key = key.format(key=teacher,
                                 item={"method": teacher_method(data, teacher, at, prefix)})
            filled.append(key)
        select = selection(filled)
    cfg = Config.parse(data, prefix, at, select)
    object.__setattr__(cfg, "path", str(where))
    object.__setattr__(cfg, "raw", data)
    return cfg


def read_params(path: str | os.PathLike = DEFAULT_PARAMS) -> dict:
    """The parameter file as parsed YAML (a dict of sections), not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise BootsepError("parameter file not found", path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BootsepError(f"not valid YAML ({' '.join(str(exc).split())})", path) from exc
    if not isinstance(data, dict):
        raise BootsepError(f"expected a mapping of sections at the top level, found {_show(data)}",
                           path)
    return data


def load_config(path: str | os.PathLike = DEFAULT_PARAMS, keys: Iterable[str] | None = None, *,
                condition: str | None = None, teacher: str | None = None) -> Config:
    """Read and validate ``path``; only ``keys`` (dotted, e.g. ``("stft", "train.seed")``) are
    loaded and checked, all of them when ``None``. Any problem: one-line :class:`BootsepError`.

    A stage calls ``load_config(params_path, PARAMS + RUN_PARAMS)`` first thing.
    """
    return parse_config(read_params(path), keys, where=str(path), condition=condition,
                        teacher=teacher)


def parse_value(value: Any, check: Check, key: str, where: str) -> Any:
    """Check one value (e.g. of a model file); a problem is a one-line error naming ``where``."""
    return check.parse(value, key, _Where(str(where)))


def parse_mapping(data: Any, schema: Mapping[str, Check], key: str, where: str) -> dict:
    """Check a mapping with exactly the keys of ``schema`` (e.g. a field of a model file);
    problems are one-line errors naming ``where`` and ``key.<name>``."""
    at = _Where(str(where))
    if not isinstance(data, dict):
        at.fail(key, data, f"a mapping with keys {_keys_text(schema)}")
    for name in data:
        if name not in schema:
            _unknown(at, key, name, data[name], schema)
    out = {}
    for name, check in schema.items():
        item = data.get(name, _MISSING)
        if item is _MISSING:
            at.fail(_join(key, name), item, check.expected)
        out[name] = check.parse(item, _join(key, name), at)
    return out


def parse_section(dotted: str, data: Any, where: str = DEFAULT_PARAMS) -> Section:
    """Validate one section (e.g. ``corpus.tts``) given as a dict; for library callers and tests."""
    cls: type[Section] = Config
    for part in dotted.split("."):
        check = cls.schema()[part][1]
        if not isinstance(check, Nested):
            raise ValueError(f"{dotted} is not a section")
        cls = check.cls
    return cls.parse(data, dotted, _Where(str(where)))
