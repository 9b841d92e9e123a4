"""How one ``params.yaml`` value is checked: the checkers (a type, a range, a set of
allowed values, a mapping of names) and the one-line errors they raise, naming the file and
the dotted key."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bootsep.errors import BootsepError

if TYPE_CHECKING:
    from bootsep.config.section import Section

SPLITS = ("train", "valid", "test")
NAME = re.compile(r"^[A-Za-z0-9_-]+$")            # condition and model size names
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENSEMBLE_JOIN = "+"                                # evaluate.ensemble_models: 'model+teacher'
ENSEMBLE_ENTRY = re.compile(r"^[A-Za-z0-9_-]+(" + re.escape(ENSEMBLE_JOIN) + r"[A-Za-z0-9_-]+)?$")


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


class Pattern(Scalar):
    """A regular expression with exactly one capturing group (returned as the string)."""

    def __init__(self, expected: str = "a regular expression with one capturing group"):
        self.expected, self.plural = expected, "regular expressions"

    def convert(self, value):
        if not isinstance(value, str) or not value.strip():
            raise _Reject
        try:
            groups = re.compile(value).groups
        except re.error:
            raise _Reject from None
        if groups != 1:
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

