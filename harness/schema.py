"""Typed, validated configs from plain data (YAML, JSON, key=value overrides).

`parse(Cls, data, path)` builds a (frozen) dataclass from a mapping and checks every key and type against the
dataclass's annotations. Errors are `ConfigError`s that name the dotted key path, what was wrong and what would
be valid, with the closest valid name for typos. Torch-free on purpose: the study runner validates whole grids
with it without paying for `import torch`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config value; the message names the key path."""


def did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(tp) if a is not Ellipsis)}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """`value` as type `tp`, or a ConfigError naming `path`. Ints pass as floats; lists pass as tuples."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return parse(tp, value, path)
    if origin is Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        hint = did_you_mean(str(value), [str(a) for a in args]) if isinstance(value, str) else ""
        raise ConfigError(f"{path}: {value!r} is not valid{hint}; valid: {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(option, value, path)
            except ConfigError as e:
                errors.append((option, e))
        for option, error in errors:  # a mapping meant for a section (`match: {...}`): the section's own error
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                raise error
        words = [str(w) for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)]
        hint = did_you_mean(value, words) if isinstance(value, str) else ""
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}{hint}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list ({_type_name(tp)}), got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} values ({_type_name(tp)}), got {len(value)}")
        item_types = [args[0]] * len(value) if (origin is list or args[-1:] == (Ellipsis,)) else list(args)
        items = [_coerce(t, v, f"{path}[{i}]") for i, (t, v) in enumerate(zip(item_types, value))]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1] if args else Any, v, f"{path}.{k}") for k, v in value.items()}
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{path}: expected null, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} at {path}")
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}{_yaml11_hint(tp, value)}")


def _yaml11_hint(tp: Any, value: Any) -> str:
    """What a YAML 1.1 habit meant: files are read as YAML 1.2 (harness/yamlio.py): `2:00:00` and `no` are strings."""
    if not isinstance(value, str):
        return ""
    if tp in (int, float) and re.fullmatch(r"[-+]?\d+(:[0-5]?\d)+(\.\d*)?", value):
        return " (base-60 numbers are not read as numbers; write the number itself, e.g. 120 for 2:00)"
    if tp is bool and value.lower() in ("yes", "no", "on", "off", "y", "n"):
        return " (only true and false are booleans)"
    return ""


@functools.cache
def _type_hints(cls: Any) -> dict[str, Any]:
    """A dataclass's field types, in field order (resolving annotations is slow: once per class)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse(cls: type[T], data: Any, path: str) -> T:
    """Build dataclass `cls` from a mapping; every key and value is checked, and `__post_init__` may check more."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {data!r}")
    hints = _type_hints(cls)  # type: ignore[arg-type]
    names = list(hints)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"{path}.{key}: unknown key{did_you_mean(str(key), names)}; valid: {', '.join(names)}")
        values[key] = _coerce(hints[key], value, f"{path}.{key}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in values:
            raise ConfigError(f"{path}.{f.name}: missing; this key is required ({_type_name(hints[f.name])})")
    try:
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{path}.{e}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass as plain JSON-able data (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {name: to_dict(getattr(obj, name)) for name in _type_hints(type(obj))}  # type: ignore[arg-type]
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def check(condition: bool, field: str, message: str) -> None:
    """For `__post_init__`: raise a ConfigError for `field` unless `condition`; `parse` prefixes the path."""
    if not condition:
        raise ConfigError(f"{field}: {message}")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """data["a"]["b"] = value for key "a.b", creating mappings on the way."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part!r} holds {child!r}, not a mapping")
        node = child
    node[last] = value


def get_dotted(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[part] if isinstance(data, dict) else getattr(data, part)
    return data


def parse_overrides(items: typing.Iterable[str]) -> dict[str, Any]:
    """["recipe.epochs=3", "model.mixer=pool"] -> {"recipe.epochs": 3, "model.mixer": "pool"}; values are YAML."""
    from .yamlio import scalar  # yamlio raises this module's ConfigError
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. recipe.epochs=3")
        out[key.strip()] = scalar(raw, f"override {key.strip()}")
    return out
