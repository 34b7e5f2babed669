"""Typed checks of config values against the dataclasses that are their schema.

Every value the front door accepts is checked here before any job starts: its type (from the
dataclass annotation), finiteness, and then the dataclass's own range checks. A bad value gives a
one-line `ConfigError` naming the field, the value and what is allowed. Values are normalized
(1e6 -> 1000000 for integers, 1 -> 1.0 for floats) so that the job id does not depend on how a
number was typed. To check a new option, add a field to the dataclass that holds it. A field whose
dataclass has no `__post_init__` of its own to check it (a base class's fields, which subclasses'
`__post_init__` would hide) declares its range in its metadata: `field(default=..., metadata=
{"range": (low, high)})`, inclusive, either end None; for a list, every element and at least one.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any


class ConfigError(ValueError):
    """A bad name or value in the configuration (one line: what and how to fix it)."""


def _kind(tp) -> str:
    """What a value of annotation `tp` must be, in words."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if _is_optional(tp):
        return f"{_kind(args[0])} or null"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a finite number"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) in (tuple, list):
        return "a list of positive integers" if args and args[0] is int else "a list"
    return getattr(tp, "__name__", str(tp))


def _is_optional(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def coerce(value: Any, tp, path: str, default: Any = None) -> Any:
    """`value` checked against annotation `tp` and normalized; ConfigError naming `path` otherwise."""
    def bad():
        return ConfigError(f"{path} must be {_kind(tp)}, got {value!r}")

    if _is_optional(tp):
        if value is None:
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is bool:
        if not isinstance(value, bool):
            raise bad()
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise bad()
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
        # non-finite only where the default itself is (e.g. an unbounded clip)
        if math.isnan(value) or (math.isinf(value) and not (isinstance(default, float) and math.isinf(default))):
            raise bad()
        return value
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if typing.get_origin(tp) in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise bad()
        args = typing.get_args(tp)
        if args and args[0] is int:
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value):
                raise bad()
        return list(value)
    return value


def check_values(cls: type, values: dict[str, Any], where: str, strict: bool = True) -> dict[str, Any]:
    """`values` (a plain dict) checked against the fields of dataclass `cls`, prefixed `where.` in
    messages. strict: unknown keys are an error naming the valid ones; else they pass unchecked
    (for config sections other parts of the code may extend)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    dotted = lambda k: f"{where}.{k}" if where else k  # noqa: E731
    if unknown and strict:
        raise ConfigError(f"unknown option(s) {', '.join(dotted(k) for k in unknown)}; "
                          f"valid: {', '.join(sorted(fields))}")
    out = {}
    for name, value in values.items():
        if name in fields:
            f = fields[name]
            default = f.default if f.default is not dataclasses.MISSING else None
            value = coerce(value, hints[name], dotted(name), default)
            if "range" in f.metadata:
                check_field_range(dotted(name), value, *f.metadata["range"])
        out[name] = value
    return out


def check_range(where: str, value, low=None, high=None, low_open: bool = False) -> None:
    """One-line error unless low <= value <= high (low < value when low_open)."""
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(f"{where} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{where} must be <= {high:,}, got {value:,}")


def check_field_range(where: str, value, low, high) -> None:
    """A field's metadata range (inclusive): a number within it, or a non-empty list of them."""
    if isinstance(value, (list, tuple)):
        if not value or any((low is not None and v < low) or (high is not None and v > high) for v in value):
            allowed = f"integers in [{low:,}, {high:,}]" if low is not None and high is not None else \
                f"integers >= {low:,}" if low is not None else f"integers <= {high:,}"
            raise ConfigError(f"{where} must be a non-empty list of {allowed}, got {list(value)}")
    elif value is not None:
        check_range(where, value, low, high)


def typed(instance, where: str) -> None:
    """Check and normalize every field of a (frozen) dataclass instance in place; call it first
    in `__post_init__`."""
    values = check_values(type(instance), {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)},
                          where)
    for name, value in values.items():
        object.__setattr__(instance, name, tuple(value) if isinstance(value, list) else value)
