"""Command-line flags generated from pydantic config models.

One source of truth: every field of the architecture's training config, the source's
config, the trainer config and the logging config becomes ``--field-name VALUE``. A
field present in several models (``--device``, ``--d-in``) sets it in each of them.
Values are parsed by the models themselves, so a bad value gets the model's error
naming the field. Two things are settled here first: a flag that takes a value must be
given one (only a boolean flag may stand alone, meaning true), and an integer field takes
an integral number written in scientific notation (``--training-tokens 1e5``).

Each flag's help ends with the value used when the flag is not given: the model's
default, or a note from the command (``default: 8, synthetic preset``) where the command
fills the field in itself.
"""

from __future__ import annotations

import argparse
import difflib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from saecore.errors import ConfigError

NOT_FLAGS = {"metadata", "sae", "source", "logger"}


class FriendlyArgumentParser(argparse.ArgumentParser):
    """Raises ConfigError (with close matches for unknown flags) instead of exiting.

    Flags must be spelled out: with prefix matching, a mistyped ``--lr-w`` would silently
    set ``--lr-warm-up-steps``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        # argparse reports unrecognized arguments joined by spaces; keep them as given, so a
        # stray positional (or an empty one) is named exactly.
        parsed, extras = super().parse_known_args(args, namespace)
        self._extras = list(extras)
        return parsed, extras

    def error(self, message: str) -> Any:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            extras = getattr(self, "_extras", None) or message.split(":", 1)[1].split()
            known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            flags = [a for a in extras if a.startswith("-")]
            hints = []
            for flag in flags:
                close = difflib.get_close_matches(flag.split("=")[0], known, n=3)
                hints.append(f"{flag}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
            if hints:
                raise ConfigError(f"unknown option(s): {'; '.join(hints)}. See: {self.prog} --help")
            stray = ", ".join(repr(a) for a in extras)
            raise ConfigError(f"unexpected argument(s) {stray}: {self.prog} takes no such positional argument; "
                              f"options are --NAME VALUE (a value that starts with '-' is written --NAME=VALUE). "
                              f"See: {self.prog} --help")
        raise ConfigError(message)


@dataclass
class FlagTable:
    """Which model sections each generated flag writes to, and which flags take whole numbers."""

    targets: dict[str, list[str]] = field(default_factory=dict)
    integer_fields: set[str] = field(default_factory=set)
    annotations: dict[str, Any] = field(default_factory=dict)

    def add_section(self, parser: argparse.ArgumentParser, section: str, title: str, model: type[BaseModel],
                    defaults: Mapping[str, str] | None = None) -> None:
        """One flag per field of ``model``; ``defaults`` replaces a field's default in the help (``default: ...``)."""
        group = parser.add_argument_group(title)
        for name, info in model.model_fields.items():
            if name in NOT_FLAGS:
                continue
            if name in self.targets:
                self.targets[name].append(section)
                continue
            self.targets[name] = [section]
            self.annotations[name] = info.annotation
            if _field_types(info) & {int} and not _field_types(info) & {bool, float}:
                self.integer_fields.add(name)
            default = (defaults or {}).get(name) or model_default(info)
            description = (info.description or "").rstrip(".")
            bare_allowed = bool in _field_types(info)
            group.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                metavar="true|false" if bare_allowed else "VALUE",
                nargs="?" if bare_allowed else None,
                const="true" if bare_allowed else None,
                default=None,
                # argparse formats help with %-interpolation: a literal % in a description must be doubled.
                help=f"{description + ' ' if description else ''}({default})".replace("%", "%%"),
            )

    def values_by_section(self, namespace: argparse.Namespace) -> dict[str, dict[str, Any]]:
        sections: dict[str, dict[str, Any]] = {}
        for name, targets in self.targets.items():
            raw = getattr(namespace, name, None)
            if raw is None:
                continue
            flag = f"--{name.replace('_', '-')}"
            if not raw.strip() and not _accepts_text(self.annotations[name]):
                raise ConfigError(f"{flag} got an empty value; expected {_describe_type(self.annotations[name])}")
            value = parse_flag_value(raw, flag)
            if name in self.integer_fields and isinstance(value, str):
                value = whole_number(name, value)
            for section in targets:
                sections.setdefault(section, {})[name] = value
        return sections


def _field_types(info: FieldInfo) -> set[Any]:
    """The plain types a field's annotation allows (``int | None`` gives ``{int, NoneType}``)."""
    annotation = info.annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return set(typing.get_args(annotation))
    return {annotation}


def model_default(info: FieldInfo) -> str:
    """The help's note for a field the command leaves to its model."""
    if info.is_required():
        return "required"
    return f"default: {format_default(info.get_default(call_default_factory=True))}"


def format_default(value: Any) -> str:
    """A default as a user would type it on the command line."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, str) and not value:
        return "''"
    return str(value)


def whole_number(name: str, text: str) -> Any:
    """``1e5`` as 100000 for an integer field; plain digits and text that is no number are left to the model."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    if text.strip().lstrip("+-").replace("_", "").isdigit():
        return text
    if not number.is_finite() or number != number.to_integral_value() or number.adjusted() > 1000:
        raise ConfigError(f"--{name.replace('_', '-')} {text}: expected a whole number (such as 100000 or 1e5)")
    return int(number)


def _accepts_text(annotation: Any) -> bool:
    return annotation is str or str in get_args(annotation)


def _describe_type(annotation: Any) -> str:
    names = {int: "a whole number", float: "a number", bool: "true or false"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def parse_flag_value(raw: str, flag: str) -> Any:
    """JSON for lists, dicts and null; everything else is left for pydantic to coerce (and name the field)."""
    text = raw.strip()
    if text.lower() in ("none", "null"):
        return None
    if text and text[0] in "[{(":
        try:
            return json.loads(text.replace("(", "[").replace(")", "]"))
        except json.JSONDecodeError as error:
            raise ConfigError(f"{flag} {raw!r}: a value starting with {text[0]!r} is read as a JSON list or "
                              f"mapping, and this is not valid JSON ({error})") from None
    return text
