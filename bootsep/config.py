"""Reading ``params.yaml``: one typed, validated settings object per section, in one place.

Every key of ``params.yaml`` is declared here once, with its type, range or allowed values
(the ``*Settings`` dataclasses below, one per section). :func:`load_config` reads the file
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

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from bootsep.errors import BootsepError

DEFAULT_PARAMS = "params.yaml"

CORPUS_KINDS = ("tts", "wsj0-2mix-spatialized", "folder")
TTS_ENGINES = ("kokoro", "espeak-ng", "flite")   # corpus.tts.speakers keys
LR_SCHEDULES = ("plateau", "cosine")              # train.lr_schedule (bootsep.train.schedule)
SPLITS = ("train", "valid", "test")
LABEL_KINDS = ("gt", "spatial", "rounds")   # the groups of train_conditions
LABELS_OF = {"gt": "gt", "spatial": "spatial", "rounds": "spatial"}   # group -> kind of labels
# scipy.signal.get_window names that need no parameter (tests/test_config.py checks them)
WINDOWS = ("hann", "hamming", "blackman", "blackmanharris", "bartlett", "boxcar", "triang",
           "flattop", "parzen", "bohman", "nuttall", "barthann", "cosine", "tukey", "lanczos",
           "taylor")
SCHEDULERS = ("processes", "local", "synchronous")
FREE_STRINGS = ("corpus.wsj0-2mix-spatialized.root", "corpus.folder.root", "dask.worker_env.*",
                "realcheck.root")
NAME = re.compile(r"^[A-Za-z0-9_-]+$")            # condition and model size names
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _NotLoaded:
    """The value of a key the stage did not declare (reading it raises AttributeError)."""

    def __repr__(self) -> str:
        return "<not loaded>"


NOT_LOADED = _NotLoaded()
_MISSING = object()
_ALL = "all"          # selection: the whole subtree


# ------------------------------------------------------------------------ error messages


def _show(value: Any) -> str:
    """A value as the user wrote it (YAML spelling), cut to one short line."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class _Where:
    """Where the values come from (the file named in every error)."""

    file: str

    def fail(self, key: str, value: Any, expected: str):
        shown = "missing" if value is _MISSING else _show(value)
        raise BootsepError(f"{key} is {shown}; expected {expected}", self.file)

    def error(self, message: str):
        raise BootsepError(message, self.file)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


# ----------------------------------------------------------------------------- checkers


class _Reject(Exception):
    pass


class Check:
    """How one key is checked; ``expected`` says what is allowed (in error messages)."""

    expected = "a value"

    def parse(self, value: Any, key: str, where: _Where, select: Any = _ALL) -> Any:
        raise NotImplementedError


class Scalar(Check):
    """A leaf value: :meth:`convert` returns the typed value or raises ``_Reject``."""

    plural = "values"

    def convert(self, value: Any) -> Any:
        raise NotImplementedError

    def parse(self, value, key, where, select=_ALL):
        if select is not _ALL:
            raise ValueError(f"params key {key} has no sub-keys")
        try:
            return self.convert(value)
        except _Reject:
            where.fail(key, value, self.expected)


def _range_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


class Int(Scalar):
    """An integer (``true``/``false`` and ``3.0`` are not) in ``[lo, hi]``."""

    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi
        rng = _range_text(lo, hi, False, False)
        self.expected, self.plural = f"an integer{rng}", f"integers{rng}"

    def convert(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Reject
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise _Reject
        return value


class Num(Scalar):
    """A finite number (int or float, not bool) in a range; returned as float."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        rng = _range_text(lo, hi, lo_open, hi_open)
        self.expected, self.plural = f"a number{rng}", f"numbers{rng}"

    def convert(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Reject
        if not math.isfinite(value):
            raise _Reject
        v = float(value)
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            raise _Reject
        if self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi):
            raise _Reject
        return v


class Flag(Scalar):
    expected, plural = "true or false", "booleans"

    def convert(self, value):
        if not isinstance(value, bool):
            raise _Reject
        return value


class Choice(Scalar):
    """One of a fixed set of strings."""

    def __init__(self, *values: str):
        self.values = values
        self.expected = f"one of {', '.join(values)}"
        self.plural = f"values among {', '.join(values)}"

    def convert(self, value):
        if not isinstance(value, str) or value not in self.values:
            raise _Reject
        return value


class Text(Scalar):
    """A non-empty string, optionally matching ``pattern`` (described by ``expected``)."""

    def __init__(self, pattern: str | None = None, expected: str = "a non-empty string"):
        self.pattern = re.compile(pattern) if pattern else None
        self.expected, self.plural = expected, "strings"

    def convert(self, value):
        if not isinstance(value, str) or not value.strip():
            raise _Reject
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise _Reject
        return value


class Maybe(Scalar):
    """``null`` or ``inner``."""

    def __init__(self, inner: Scalar):
        self.inner = inner
        self.expected, self.plural = f"null or {inner.expected}", f"nulls or {inner.plural}"

    def convert(self, value):
        return None if value is None else self.inner.convert(value)


class Either(Scalar):
    """The first of ``options`` that accepts the value."""

    def __init__(self, *options: Scalar):
        self.options = options
        self.expected = " or ".join(o.expected for o in options)
        self.plural = " or ".join(o.plural for o in options)

    def convert(self, value):
        for option in self.options:
            try:
                return option.convert(value)
            except _Reject:
                continue
        raise _Reject


class EnvValue(Scalar):
    """An environment variable's value: a string or a number (``null`` is handled by Maybe)."""

    expected, plural = "a string or a number", "strings or numbers"

    def convert(self, value):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _Reject
        return value


class ListOf(Scalar):
    """A list of at least ``min_len`` items; returned as a tuple."""

    def __init__(self, inner: Scalar, min_len: int = 1):
        self.inner, self.min_len = inner, min_len
        self.expected = f"a {'non-empty ' if min_len == 1 else ''}list of {inner.plural}"

    def convert(self, value):
        if not isinstance(value, list) or len(value) < self.min_len:
            raise _Reject
        return tuple(self.inner.convert(v) for v in value)


class Pair(Scalar):
    """``[low, high]`` with ``low <= high``; returned as a tuple."""

    def __init__(self, inner: Scalar):
        self.inner = inner
        self.expected = f"a list [low, high] of two {inner.plural} with low <= high"

    def convert(self, value):
        if not isinstance(value, list) or len(value) != 2:
            raise _Reject
        lo, hi = (self.inner.convert(v) for v in value)
        if lo > hi:
            raise _Reject
        return lo, hi


def _keys_text(names: Iterable[str]) -> str:
    return ", ".join(names) or "no keys"


def _unknown(where: _Where, key: str, name: Any, value: Any, known: Iterable[str]):
    where.error(f"{_join(key, str(name))} (= {_show(value)}) is not a known key (misspelt?); "
                f"{key or 'the file'} has {_keys_text(known)}")


class Splits(Check):
    """``{train: x, valid: y, test: z}``, each value checked by ``inner``."""

    def __init__(self, inner: Scalar):
        self.inner = inner
        self.expected = f"a mapping of {', '.join(SPLITS)} to {inner.plural}"

    def parse(self, value, key, where, select=_ALL):
        if select is not _ALL:
            raise ValueError(f"params key {key} is read whole")
        if not isinstance(value, dict):
            where.fail(key, value, self.expected)
        for name in value:
            if name not in SPLITS:
                _unknown(where, key, name, value[name], SPLITS)
        out = {}
        for split in SPLITS:
            item = value.get(split, _MISSING)
            if item is _MISSING:
                where.fail(f"{key}.{split}", item, self.inner.expected)
            out[split] = self.inner.parse(item, f"{key}.{split}", where)
        return out


class MapOf(Check):
    """A mapping of user-chosen names (``pattern``) to values checked by ``inner``."""

    def __init__(self, inner: Check, what: str, pattern: re.Pattern = NAME,
                 names: str = "letters, digits, _ and -", min_len: int = 0):
        self.inner, self.pattern, self.names, self.min_len = inner, pattern, names, min_len
        self.expected = f"a {'non-empty ' if min_len else ''}mapping of names to {what}"

    def parse(self, value, key, where, select=_ALL):
        if not isinstance(value, dict) or len(value) < self.min_len:
            where.fail(key, value, self.expected)
        if select is not _ALL:      # only the named entries (e.g. one training condition)
            out = {}
            for name, sub in select.items():
                if name not in value:
                    where.fail(f"{key}.{name}", _MISSING, self.inner.expected)
                out[name] = self.inner.parse(value[name], f"{key}.{name}", where, sub)
            return out
        for name in value:
            if not isinstance(name, str) or not self.pattern.fullmatch(name):
                where.error(f"{key} has an entry named {_show(name)}; names may only hold "
                            f"{self.names}")
        return {name: self.inner.parse(v, f"{key}.{name}", where) for name, v in value.items()}


class Nested(Check):
    """A mapping with fixed keys: one :class:`Section` dataclass."""

    def __init__(self, cls: type[Section]):
        self.cls = cls
        self.expected = f"a mapping with keys {_keys_text(cls.keys())}"

    def parse(self, value, key, where, select=_ALL):
        return self.cls.parse(value, key, where, select)


class NullOr(Check):
    """``null`` or a value checked by ``inner`` (e.g. a nested section)."""

    def __init__(self, inner: Check):
        self.inner = inner
        self.expected = f"null or {inner.expected}"

    def parse(self, value, key, where, select=_ALL):
        return None if value is None else self.inner.parse(value, key, where, select)


def _p(check: Check, key: str | None = None, default: Any = _MISSING):
    """A dataclass field checked by ``check``; ``key``: its params.yaml name, if not the field's;
    ``default``: its value when the key is absent (keys without one are required)."""
    return field(metadata={"check": check, "key": key, "default": default})


# ----------------------------------------------------------------------------- sections


class Section:
    """Base of the settings dataclasses: parsing, partial loading, the section as a dict."""

    @classmethod
    def schema(cls) -> dict[str, tuple[str, Check]]:
        """``{params.yaml key: (attribute name, check)}`` in declaration order."""
        return {f.metadata["key"] or f.name: (f.name, f.metadata["check"])
                for f in fields(cls) if "check" in f.metadata}

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.schema())

    @classmethod
    def _default(cls, name: str) -> Any:
        """The value of optional key ``name`` when absent (``_MISSING``: the key is required)."""
        return next(f.metadata.get("default", _MISSING) for f in fields(cls)
                    if (f.metadata.get("key") or f.name) == name)

    @classmethod
    def parse(cls, value: Any, key: str, where: _Where, select: Any = _ALL) -> Section:
        schema = cls.schema()
        if select is not _ALL:
            for name in select:
                if name not in schema:
                    raise ValueError(f"no params key {_join(key, name)}")
        if not isinstance(value, dict):
            where.fail(key, value, f"a mapping with keys {_keys_text(schema)}")
        if select is _ALL:
            for name in value:
                if name not in schema:
                    _unknown(where, key, name, value[name], schema)
        kwargs, defaulted = {}, set()
        for name, (attr, check) in schema.items():
            if select is not _ALL and name not in select:
                kwargs[attr] = NOT_LOADED
                continue
            sub = _join(key, name)
            if name not in value and cls._default(name) is not _MISSING:
                kwargs[attr] = cls._default(name)
                defaulted.add(name)
                continue
            if name not in value:
                where.fail(sub, _MISSING, check.expected)
            inner = _ALL if select is _ALL else select[name]
            kwargs[attr] = check.parse(value[name], sub, where, inner)
        obj = cls(**kwargs)
        object.__setattr__(obj, "_key", key)
        object.__setattr__(obj, "_defaulted", frozenset(defaulted))
        obj.validate(where)
        return obj

    def validate(self, where: _Where) -> None:
        """Checks between keys of the section (only between loaded keys)."""

    def loaded(self, *attrs: str) -> bool:
        return all(object.__getattribute__(self, a) is not NOT_LOADED for a in attrs)

    def key(self, attr: str) -> str:
        """The dotted params.yaml key of attribute ``attr``."""
        name = next(n for n, (a, _) in self.schema().items() if a == attr)
        return _join(object.__getattribute__(self, "_key"), name)

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if value is NOT_LOADED:
            raise AttributeError(f"params key '{self.key(name)}' was not loaded: a stage reads "
                                 "only the keys in its PARAMS + RUN_PARAMS")
        return value

    def __repr__(self) -> str:
        items = ", ".join(f"{a}={object.__getattribute__(self, a)!r}"
                          for a, _ in self.schema().values())
        return f"{type(self).__name__}({items})"

    def as_dict(self) -> dict:
        """The loaded keys as params.yaml spells them (lists for tuples), values validated;
        optional keys only when the file has them."""
        def plain(v):
            if isinstance(v, Section):
                return v.as_dict()
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        absent = getattr(self, "_defaulted", frozenset())      # optional keys not written
        return {name: plain(object.__getattribute__(self, attr))
                for name, (attr, _) in self.schema().items()
                if self.loaded(attr) and name not in absent}


def section(cls):
    """Decorator: a frozen settings dataclass (repr from :class:`Section`)."""
    return dataclass(frozen=True, repr=False)(cls)


# corpus --------------------------------------------------------------------------------


@section
class ArraySettings(Section):
    kind: str = _p(Choice("circular"))
    num_mics: int = _p(Int(2))
    radius_m: float = _p(Num(0, lo_open=True))


@section
class NoiseSettings(Section):
    """``corpus.tts.augment.noise``: diffuse background noise (pipeline/corpus/augment.py)."""

    kind: str = _p(Choice("none", "white", "pink"))
    field: str = _p(Choice("spherical", "cylindrical"))
    snr_db: tuple = _p(Pair(Num(-20, 80)))


@section
class AugmentSettings(Section):
    """``corpus.tts.augment``: per-mixture speed, level and noise draws."""

    speed: tuple = _p(Pair(Num(0.5, 2.0)))
    level_db: tuple = _p(Pair(Num(-40, 0)))
    noise: NoiseSettings = _p(Nested(NoiseSettings))


@section
class RoomSizeSettings(Section):
    """``corpus.tts.rooms.size_m``: shoebox dimensions drawn per reverberant mixture."""

    x: tuple = _p(Pair(Num(0, lo_open=True)))
    y: tuple = _p(Pair(Num(0, lo_open=True)))
    z: tuple = _p(Pair(Num(0, lo_open=True)))


@section
class RoomsSettings(Section):
    """``corpus.tts.rooms``: reverberant mixtures in shoebox rooms (pipeline/corpus/rooms.py)."""

    fraction: float = _p(Num(0, 1))
    rt60_s: tuple = _p(Pair(Num(0, lo_open=True)))
    size_m: RoomSizeSettings = _p(Nested(RoomSizeSettings))
    array_height_m: tuple = _p(Pair(Num(0, lo_open=True)))
    source_distance_m: tuple = _p(Pair(Num(0, lo_open=True)))
    wall_margin_m: float = _p(Num(0, lo_open=True))
    image_decay_db: float = _p(Num(0, 200, lo_open=True))

    def validate(self, where):
        if not self.loaded("size_m", "wall_margin_m"):
            return
        margin, size = self.wall_margin_m, self.size_m
        if self.loaded("source_distance_m"):
            need = 2 * (margin + self.source_distance_m[0])
            for axis in ("x", "y"):
                if getattr(size, axis)[0] < need:
                    where.fail(f"{self.key('size_m')}.{axis}", list(getattr(size, axis)),
                               f"rooms at least {need:g} m long (two sources at "
                               f"{self.key('source_distance_m')}[0] on opposite sides of the "
                               f"array, {self.key('wall_margin_m')} from the walls)")
        if self.loaded("array_height_m"):
            lo, hi = self.array_height_m
            if lo < margin or hi > size.z[0] - margin:
                where.fail(self.key("array_height_m"), [lo, hi],
                           f"heights within [{margin:g}, {size.z[0] - margin:g}] m "
                           f"({self.key('wall_margin_m')} from floor and lowest ceiling)")


def sabine_absorption(rt60_s: float, size_m, speed_of_sound: float) -> float:
    """Energy absorption of every wall for reverberation time ``rt60_s`` in a shoebox
    ``size_m`` by Sabine's formula (as pyroomacoustics' ``inverse_sabine``)."""
    x, y, z = size_m
    volume, surface = x * y * z, 2 * (x * y + x * z + y * z)
    return 24 * math.log(10) * volume / (speed_of_sound * surface * rt60_s)


@section
class TtsSettings(Section):
    """``corpus.tts``: the synthesized corpus (pipeline/corpus/tts_corpus.py)."""

    sample_rate: int = _p(Int(1))
    mixtures: dict = _p(Splits(Int(0)))
    speaker_fractions: dict = _p(Splits(Num(0)))
    utterances_per_speaker: int = _p(Int(1))
    speakers: dict = _p(MapOf(Int(0), "speaker counts", min_len=1))
    test_engines: tuple = _p(ListOf(Choice(*TTS_ENGINES), min_len=0))
    heldout_mixtures: int = _p(Int(0))
    heldout_valid_mixtures: int = _p(Int(0), default=0)
    sentence_words: tuple = _p(Pair(Int(1)))
    max_seconds: float = _p(Num(0, lo_open=True))
    min_seconds: float = _p(Num(0, lo_open=True))
    relative_level_db: tuple = _p(Pair(Num()))
    min_azimuth_separation_deg: float = _p(Num(0, 180, hi_open=True))
    distance_m: tuple = _p(Pair(Num(0, lo_open=True)))
    speed_of_sound: float = _p(Num(0, lo_open=True))
    peak: float = _p(Num(0, 1, lo_open=True, hi_open=True))
    array: ArraySettings = _p(Nested(ArraySettings))
    augment: AugmentSettings = _p(Nested(AugmentSettings))
    rooms: RoomsSettings = _p(Nested(RoomsSettings))

    def validate(self, where):
        if self.loaded("speakers"):
            for name, count in self.speakers.items():
                if name not in TTS_ENGINES:
                    _unknown(where, self.key("speakers"), name, count, TTS_ENGINES)
        if self.loaded("speakers", "test_engines"):
            held = sum(self.speakers.get(e, 0) for e in self.test_engines)
            if sum(self.speakers.values()) - held < 2:
                where.fail(self.key("speakers"), self.speakers,
                           f"at least 2 speakers of engines not in {self.key('test_engines')}")
            if self.loaded("heldout_mixtures") and self.heldout_mixtures and held < 2:
                where.fail(self.key("speakers"), self.speakers,
                           f"at least 2 speakers of {self.key('test_engines')} "
                           f"({self.key('heldout_mixtures')} is {self.heldout_mixtures})")
            if self.loaded("heldout_valid_mixtures") and self.heldout_valid_mixtures \
                    and held < 4:
                where.fail(self.key("speakers"), self.speakers,
                           f"at least 4 speakers of {self.key('test_engines')}, split between "
                           f"valid and test ({self.key('heldout_valid_mixtures')} is "
                           f"{self.heldout_valid_mixtures})")
        if self.loaded("min_seconds", "max_seconds") and self.min_seconds > self.max_seconds:
            where.fail(self.key("min_seconds"), self.min_seconds,
                       f"a number at most {self.key('max_seconds')} ({self.max_seconds:g})")
        if self.loaded("speaker_fractions"):
            fractions = self.speaker_fractions
            if sum(fractions.values()) <= 0:
                where.fail(self.key("speaker_fractions"), fractions,
                           "fractions with a positive sum")
            if self.loaded("mixtures"):
                for split in SPLITS:
                    if self.mixtures[split] and fractions[split] <= 0:
                        where.fail(f"{self.key('speaker_fractions')}.{split}", fractions[split],
                                   f"a number > 0 ({self.key('mixtures')}.{split} is "
                                   f"{self.mixtures[split]})")
        if self.loaded("distance_m", "array") and self.distance_m[0] <= self.array.radius_m:
            where.fail(self.key("distance_m"), list(self.distance_m),
                       f"distances beyond the array radius {self.array.radius_m:g} m")
        if self.loaded("rooms", "array"):
            rooms, radius = self.rooms, self.array.radius_m
            if rooms.source_distance_m[0] <= radius:
                where.fail(rooms.key("source_distance_m"), list(rooms.source_distance_m),
                           f"distances beyond the array radius {radius:g} m")
            if rooms.wall_margin_m <= radius:
                where.fail(rooms.key("wall_margin_m"), rooms.wall_margin_m,
                           f"a margin beyond the array radius {radius:g} m")
        if self.loaded("rooms", "speed_of_sound"):
            rooms = self.rooms
            largest = tuple(getattr(rooms.size_m, a)[1] for a in "xyz")
            if sabine_absorption(rooms.rt60_s[0], largest, self.speed_of_sound) > 1:
                where.fail(rooms.key("rt60_s"), list(rooms.rt60_s),
                           f"reverberation times a room of {rooms.key('size_m')} can have "
                           f"(Sabine: the largest room needs absorption > 1 for "
                           f"{rooms.rt60_s[0]:g} s)")


@section
class Wsj0Settings(Section):
    """``corpus.wsj0-2mix-spatialized``: MERL's spatialized wsj0-2mix, read in place."""

    root: str | None = _p(Maybe(Text(expected="a folder path")))
    condition: str = _p(Choice("anechoic", "reverb"))
    sample_rate: str = _p(Choice("8k", "16k"))
    mode: str = _p(Choice("min", "max"))


@section
class FolderSettings(Section):
    """``corpus.folder``: any folder of multichannel recordings."""

    root: str | None = _p(Maybe(Text(expected="a folder path")))
    valid_fraction: float = _p(Num(0, 1, hi_open=True))
    test_fraction: float = _p(Num(0, 1, hi_open=True))
    num_sources: int = _p(Int(1))

    def validate(self, where):
        if self.loaded("valid_fraction", "test_fraction") \
                and self.valid_fraction + self.test_fraction >= 1:
            where.fail(self.key("test_fraction"), self.test_fraction,
                       f"a number below 1 - {self.key('valid_fraction')} "
                       f"({1 - self.valid_fraction:g}; train needs recordings)")


@section
class CorpusSettings(Section):
    kind: str = _p(Choice(*CORPUS_KINDS))
    seed: int = _p(Int(0))
    tts: TtsSettings = _p(Nested(TtsSettings))
    wsj0_2mix_spatialized: Wsj0Settings = _p(Nested(Wsj0Settings), "wsj0-2mix-spatialized")
    folder: FolderSettings = _p(Nested(FolderSettings))

    def validate(self, where):
        for kind, attr in (("wsj0-2mix-spatialized", "wsj0_2mix_spatialized"),
                           ("folder", "folder")):
            if self.loaded("kind", attr) and self.kind == kind and getattr(self, attr).root is None:
                where.fail(f"{self.key(attr)}.root", None,
                           f"the folder holding the corpus (corpus.kind is {kind})")


# stft, shards, dask -------------------------------------------------------------------


@section
class StftSettings(Section):
    """``stft`` (paper §3.2); :attr:`win_length` and :attr:`hop_length` in samples."""

    sample_rate: int = _p(Int(1))
    window_ms: float = _p(Num(0, lo_open=True))
    hop_ms: float = _p(Num(0, lo_open=True))
    window: str = _p(Choice(*WINDOWS))
    pair_channels: tuple = _p(ListOf(Int(1)))
    seed: int = _p(Int(0))

    @property
    def win_length(self) -> int:
        return int(round(self.window_ms * self.sample_rate / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.hop_ms * self.sample_rate / 1000))

    def validate(self, where):
        if not self.loaded("sample_rate", "window_ms", "hop_ms"):
            return
        if self.win_length < 1:
            where.fail(self.key("window_ms"), self.window_ms,
                       f"a window of at least one sample at {self.sample_rate} Hz")
        if not 1 <= self.hop_length <= self.win_length:
            where.fail(self.key("hop_ms"), self.hop_ms, f"a hop of at least one sample and at "
                       f"most the window ({self.window_ms:g} ms) at {self.sample_rate} Hz")


@section
class ShardsSettings(Section):
    utterances_per_shard: int = _p(Int(1))


@section
class DaskSettings(Section):
    """``dask`` (pipeline/parallel.py); only changes how the shard stages run."""

    scheduler: str = _p(Choice(*SCHEDULERS))
    address: str | None = _p(Maybe(Text(r"[a-z][a-z0-9+.-]*://\S+",
                                        "an address like tcp://host:8786")))
    workers: int | None = _p(Maybe(Int(1)))
    threads_per_worker: int = _p(Int(1))
    worker_env: dict = _p(MapOf(Maybe(EnvValue()), "strings, numbers or null", ENV_NAME,
                                "letters, digits and _ (an environment variable)"))


# spatial, confidence ------------------------------------------------------------------


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
        return SPLITS if self.fit_train else tuple(s for s in SPLITS if s != "train")

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
    ``student`` (a training condition) as a per-bin prior."""

    teacher: str = _p(Text(NAME.pattern, "the name of an entry of spatial.teachers"))
    student: str = _p(Text(NAME.pattern, "the name of a training condition"))


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


# model, train, train_conditions -------------------------------------------------------


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
    loader_workers: int = _p(Int(0))
    shuffle_buffer: int = _p(Int(1))
    bucket: bool = _p(Flag())
    torch_threads: int | str = _p(Either(Int(1), Choice("auto")))
    device: str = _p(Text(r"auto|cpu|cuda(:[0-9]+)?", "one of auto, cpu, cuda, cuda:N"))
    amp: bool = _p(Flag())
    max_batches_per_epoch: int | None = _p(Maybe(Int(1)))
    num_sources: int = _p(Int(1))
    augment_warp: tuple = _p(Pair(Num(0.5, 2.0)), default=(1.0, 1.0))
    augment_tilt_db: float = _p(Num(0, 40), default=0.0)
    batch_parts: int = _p(Int(1), default=1)


@section
class ConditionSchedule(Section):
    """A training condition's own number of ``epochs`` and ``lr_schedule`` (null: ``train``'s)."""

    epochs: int | None = _p(NullOr(Int(1)), default=None)
    lr_schedule: str | None = _p(NullOr(Choice(*LR_SCHEDULES)), default=None)


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


# evaluate, report ---------------------------------------------------------------------


@section
class EvaluateSettings(Section):
    """``evaluate`` (paper §3.3)."""

    kmeans_threshold_db: float = _p(Num())
    kmeans_seed: int = _p(Int(0))
    # soft K-means masks exp(-beta |v - mu_k|^2), normalised over k; null: binary (the paper's,
    # and the default of params files that predate the key)
    mask_beta: float | None = _p(NullOr(Num(0, lo_open=True)), default=None)
    batch_size: int = _p(Int(1))
    # the bootstrapped models whose ensembles with their own teachers are measured (§3.3)
    ensemble_models: tuple = _p(ListOf(Text(NAME.pattern, "the name of a training condition")))
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
class RealcheckSettings(Section):
    """``realcheck``: real recordings mixed two at a time as the corpus mixes, scored by trained
    models (a check only, never trained on: stages/s10_realcheck.py)."""

    root: str = _p(Text(expected="a folder path"))
    raw_sample_rate: int = _p(Int(1))
    models: tuple = _p(ListOf(Text(NAME.pattern, "the name of a training condition")))
    teachers: tuple = _p(ListOf(Text(NAME.pattern, "the name of an entry of spatial.teachers"),
                                min_len=0))
    seed: int = _p(Int(0))
    pairs: int | None = _p(Maybe(Int(1)))
    min_seconds: float = _p(Num(0))


# the file -----------------------------------------------------------------------------


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
            groups = {n: g for n, g, _ in self.train_conditions.entries()}
            usable = [n for n, g in groups.items() if g != "gt"]
            models = self.evaluate.ensemble_models
            for i, name in enumerate(models):
                key = f"evaluate.ensemble_models[{i}]"
                if groups.get(name) == "gt":
                    where.error(f"{key} is '{name}', a ground-truth condition (no teacher to "
                                "ensemble with); expected a spatial or rounds condition")
                if name not in groups:
                    where.fail(key, name, "a spatial or rounds training condition "
                               f"({', '.join(usable) or 'none defined'})")
                if name in models[:i]:
                    where.error(f"{key}: '{name}' is listed twice")
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


# ------------------------------------------------------------------------------ loading


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
