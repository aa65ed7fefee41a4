"""Command-line flags generated from pydantic config models.

One source of truth: every field of the architecture's training config, the source's
config, the trainer config and the logging config becomes ``--field-name VALUE``. A
field present in several models (``--device``, ``--d-in``) sets it in each of them.
Values are parsed by the models themselves, so a bad value gets the model's error
naming the field.
"""

from __future__ import annotations

import argparse
import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from saecore.errors import ConfigError

NOT_FLAGS = {"metadata", "sae", "source", "logger"}


class FriendlyArgumentParser(argparse.ArgumentParser):
    """Raises ConfigError (with close matches for unknown flags) instead of exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            unknown = [a for a in message.split(":", 1)[1].split() if a.startswith("--")]
            known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            hints = []
            for flag in unknown:
                close = difflib.get_close_matches(flag.split("=")[0], known, n=3)
                hints.append(f"{flag}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise ConfigError(f"unknown option(s): {'; '.join(hints)}. See: {self.prog} --help")
        raise ConfigError(message)


@dataclass
class FlagTable:
    """Which model sections each generated flag writes to."""

    targets: dict[str, list[str]] = field(default_factory=dict)

    def add_section(self, parser: argparse.ArgumentParser, section: str, title: str, model: type[BaseModel]) -> None:
        group = parser.add_argument_group(title)
        for name, info in model.model_fields.items():
            if name in NOT_FLAGS:
                continue
            if name in self.targets:
                self.targets[name].append(section)
                continue
            self.targets[name] = [section]
            default = "required" if info.is_required() else f"default: {info.get_default(call_default_factory=True)!r}"
            description = (info.description or "").rstrip(".")
            group.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                metavar="VALUE",
                nargs="?",
                const="true",
                default=None,
                # argparse formats help with %-interpolation: a literal % in a description must be doubled.
                help=f"{description + '; ' if description else ''}{default}".replace("%", "%%"),
            )

    def values_by_section(self, namespace: argparse.Namespace) -> dict[str, dict[str, Any]]:
        sections: dict[str, dict[str, Any]] = {}
        for name, targets in self.targets.items():
            raw = getattr(namespace, name, None)
            if raw is None:
                continue
            for section in targets:
                sections.setdefault(section, {})[name] = parse_flag_value(raw)
        return sections


def parse_flag_value(raw: str) -> Any:
    """JSON for lists, dicts and null; everything else is left for pydantic to coerce."""
    text = raw.strip()
    if text.lower() in ("none", "null"):
        return None
    if text[:1] in "[{(":
        try:
            return json.loads(text.replace("(", "[").replace(")", "]"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"could not parse {raw!r} as JSON: {error}") from None
    return text
