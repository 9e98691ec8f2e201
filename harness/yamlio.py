"""Reading the toolkit's YAML (study files, run configs, cluster profiles, command-line values) strictly.

PyYAML follows YAML 1.1, whose implicit types surprise: `timeout_min: 2:00:00` is the sexagesimal number 7200,
`name: no` or `partition: off` is the boolean False, and a key written twice silently keeps the last value. Here
plain scalars are resolved as in YAML 1.2's core schema (booleans are only true/false, no base-60 numbers), so
`2:00:00` and `no` stay strings and the typed config check names the key if a number or a boolean was meant; a key
written twice is an error naming both lines. Unreadable files (a folder, not UTF-8) are `ConfigError`s too.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .schema import ConfigError


class StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and numbers, and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # an unhashable key: SafeLoader's own error follows
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice (lines {seen[key]} and {line}); keep one",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep)


# YAML 1.2 core schema: replace SafeLoader's bool, int and float resolvers (1.1's yes/no/on/off and base 60)
_YAML11_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in _YAML11_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(
    r"^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def loads(text: str, where: str) -> Any:
    """Parse YAML text; a syntax error or a duplicate key is a ConfigError naming `where` and the line."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 (StrictLoader is a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{where}:{line} not valid YAML: {problem}") from None


def load_file(path: str | Path, what: str = "YAML file") -> Any:
    """A YAML file's content; a missing file, a folder or a file that is not UTF-8 text is a ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected a {what}")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read (permission denied)") from None
    except UnicodeDecodeError as e:
        encoding = "UTF-16" if text_is_utf16(path) else "not UTF-8"
        raise ConfigError(f"{path}: the file is {encoding} (byte {e.start}: {e.object[e.start]:#04x}); save it as "
                          f"UTF-8") from None
    return loads(text.removeprefix("\ufeff"), str(path))


def text_is_utf16(path: Path) -> bool:
    return path.read_bytes()[:2] in (b"\xff\xfe", b"\xfe\xff")


def scalar(raw: str, where: str) -> Any:
    """A command-line value (`key=VALUE`) read as a YAML scalar or flow collection, by the same rules as files."""
    return loads(raw, where) if raw.strip() else ""
