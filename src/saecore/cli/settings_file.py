"""Reading a YAML or JSON settings file (``saecore train --config`` / ``--sweep``).

A key given twice in one mapping is an error rather than "the last one wins": two ``sae:``
sections in a run file almost always mean one of them was meant to be something else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from saecore.errors import ConfigError


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping in the file repeats a key."""


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with a repeated key."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(problem=f"key {key!r} is given twice in one mapping",
                                        problem_mark=key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _reject_duplicate_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"key {repeated[0]!r} is given twice in one object")
    return dict(pairs)


def _one_line(error: Exception) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return " ".join(str(error).split())


def read_config_file(path: str, flag: str = "--config") -> dict[str, Any]:
    """The top-level mapping of settings in ``path``; ``flag`` is the option that named the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    try:
        text = file.read_text()
        if file.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_reject_duplicate_json_keys)
        else:
            data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: plain data only
    except (ValueError, yaml.YAMLError) as error:
        raise ConfigError(f"{flag} {path}: cannot parse ({_one_line(error)})") from None
    except RecursionError:
        raise ConfigError(f"{flag} {path}: nested too deeply to read") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{flag} {path}: expected a mapping of settings at the top level")
    return data
