"""Typed, validated configuration objects.

Every configurable thing in cclnn (a network, later a training run) is a frozen dataclass.
Values coming from a user (keyword overrides, YAML, ``key=value`` on the command line) go
through :func:`make_config`, which refuses unknown keys (suggesting the closest valid one)
and values of the wrong type, so a typo is an error instead of a silently ignored option.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import math
import reprlib
import typing
from typing import Any, Mapping, TypeVar

from .errors import CclnnError

T = TypeVar("T")


class ConfigError(CclnnError, ValueError):
    """A configuration key or value is invalid; the message names the key."""


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 60
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4


def shown(value: Any) -> str:
    """``repr(value)`` cut to about 60 characters, without building the whole repr: a value
    in an error message may be huge (a long list in a config) and must stay one short line."""
    text = " ".join(_SHORT_REPR.repr(value).split())
    return text if len(text) <= 64 else text[:60] + "..."


def suggest(name: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Union:
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (dict, collections.abc.Mapping) or dataclasses.is_dataclass(tp):
        return "mapping"
    if origin in (tuple, list):
        args = typing.get_args(tp)
        inner = _describe(args[0]) if args else "value"
        return f"list of {inner}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted where lossless.

    ints are accepted for floats, lists for tuples, and numeric strings for floats (YAML 1.1,
    hence PyYAML, reads ``2e-4`` as a string); nothing else is converted.
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {shown(value)}")
    if origin is typing.Union:
        for arg in typing.get_args(tp):
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {shown(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {shown(value)}")
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {shown(value)}")
        return dict(value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_describe(tp)}, got {shown(value)}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {shown(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {shown(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '2e-4' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {shown(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {shown(value)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return make_config(tp, value, prefix=f"{key}.")
        raise ConfigError(f"{key}: expected a mapping, got {shown(value)}")
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # a bug in cclnn, not user error


def make_config(cls: type[T], values: Mapping[str, Any] | None = None, *, base: T | None = None,
                prefix: str = "") -> T:
    """Build the dataclass ``cls`` from ``values`` (on top of ``base`` if given), validated."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ConfigError(f"unknown key '{prefix}{key}'{suggest(key, fields)}; "
                              f"valid keys: {', '.join(sorted(fields))}")
    kwargs = {} if base is None else {f: getattr(base, f) for f in fields}
    for key, value in values.items():
        kwargs[key] = coerce(value, hints[key], prefix + key)
    try:
        config = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None
    check = getattr(config, "validate", None)
    if check is not None:
        check()
    return config


def config_to_dict(config: Any) -> dict:
    """A plain dict (tuples as lists) suitable for YAML/JSON."""
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _interval(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_num(low)}, {_num(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_num(low)}"
    return f"{'<' if high_open else '<='} {_num(high)}"


def check_number(key: str, value: Any, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False,
                 optional: bool = False) -> None:
    """Raise a one-line :class:`ConfigError` naming ``key`` unless ``value`` lies in the range
    (``low``/``high`` inclusive unless ``*_open``). Floats must also be finite; ``optional``
    lets ``None`` through. ``optim.lr: must be a finite number > 0, got nan``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {shown(value)}")
    is_int = isinstance(value, int)
    ok = is_int or math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if is_int and low is not None and high is None and not low_open:
        raise ConfigError(f"{key}: must be at least {_num(low)}, got {shown(value)}")
    what = "an integer" if is_int else "a finite number"
    rng = "" if low is None and high is None else " " + _interval(low, high, low_open, high_open)
    raise ConfigError(f"{key}: must be {what}{rng}, got {shown(value)}")
