"""Checks of config values against their dataclass fields: the annotation's type (or the default's
kind), finite numbers of sane size, unknown keys; each failure a ``ConfigError`` naming the key."""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from .errors import ConfigError


def short(text: Any, n: int = 60) -> Any:
    """``text`` cut to ``n`` characters for a message (non-strings as they are)."""
    if not isinstance(text, str):
        return text
    return text if len(text) <= n else f"{text[:n]}..."


def require(ok: bool, source: str, key: str, value: Any, expected: str) -> None:
    """ConfigError ``<source>: <key>=<value>: expected <expected>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{source}: {key}={value!r}: expected {expected}")


def build_section(kind: type, raw: Any, base: Any, where: str) -> Any:
    """``base`` (an instance of dataclass ``kind``) with the checked values of mapping ``raw``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(kind)
    values = {}
    for key, value in raw.items():
        default = getattr(base, key)
        check_value(f"{where}.{key}", value, hints.get(key, Any), default)
        values[key] = float(value) if isinstance(default, float) and isinstance(value, int) else value
    return dataclasses.replace(base, **values)


MAX_INT = 2 ** 53  # larger integers are refused: no setting needs them, and torch cannot hold some


def check_value(where: str, value: Any, hint: Any, default: Any) -> None:
    """ConfigError unless ``value`` fits the annotation ``hint`` (the default's kind when it has
    one) and is a finite number of sane size where it is a number."""
    if value is None:
        if not _allows_none(hint):
            raise ConfigError(f"{where} is empty: expected {_describe(hint, default)}")
        return
    wrong = (not _same_kind(value, default)) if default is not None else (not _matches(value, hint))
    if wrong or (isinstance(default, (list, tuple)) and not _matches(value, hint)):  # a list's items too
        raise ConfigError(f"{where}={short(value)!r}: expected {_describe(hint, default)}")
    for v in (value if isinstance(value, (list, tuple)) else [value]):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{where}={value!r}: expected a finite number")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
            raise ConfigError(f"{where}={value!r}: expected a number of at most 2**53 in size")


def check_fields(kind: type, raw: dict[str, Any], where: str) -> None:
    """The types and finiteness of the known keys of ``raw`` against dataclass ``kind``'s fields (the
    model and method sections, whose own constructors check ranges and names)."""
    hints = typing.get_type_hints(kind)
    for f in dataclasses.fields(kind):
        if f.name in raw and f.name != "method":
            default = f.default if f.default is not dataclasses.MISSING else None
            check_value(f"{where}.{f.name}", raw[f.name], hints.get(f.name, Any), default)


def _allows_none(hint: Any) -> bool:
    return hint is Any or type(None) in typing.get_args(hint)


def _non_none(hint: Any) -> list[Any]:
    return [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_args(hint) and (
        typing.get_origin(hint) in (typing.Union, types.UnionType)) else [hint]


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (int, float, bool, str, list[...], optional)."""
    for h in _non_none(hint):
        if h is Any:
            return True
        origin = typing.get_origin(h)
        if origin in (list, tuple):
            (item,) = typing.get_args(h)[:1] or (Any,)
            if isinstance(value, (list, tuple)) and all(_matches(v, item) for v in value):
                return True
        elif h is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return True
        elif h is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif isinstance(h, type) and isinstance(value, h):
            return True
    return False


def _describe(hint: Any, default: Any) -> str:
    names = []
    for h in _non_none(hint):
        origin = typing.get_origin(h)
        if origin in (list, tuple):
            (item,) = typing.get_args(h)[:1] or (Any,)
            names.append(f"a list of {getattr(item, '__name__', 'values')}s")
        else:
            name = getattr(h, "__name__", str(h))
            names.append(f"{'an' if name[0] in 'aeiou' else 'a'} {name}")
    text = " or ".join(names)
    if _allows_none(hint):
        text += " (or leave it out)"
    return f"{text}, like the default {default!r}" if default is not None else text


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))
