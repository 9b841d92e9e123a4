"""The base of the settings dataclasses: parsing a section's mapping, loading only the
keys a stage declares, the section as a dict."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from bootsep.config.checks import (
    _ALL,
    _MISSING,
    NOT_LOADED,
    Check,
    _join,
    _keys_text,
    _unknown,
    _Where,
)


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

