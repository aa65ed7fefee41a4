"""Turn pydantic validation errors into one-line messages for people, and the checks configs share."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from saecore.errors import ConfigError


def describe_validation_error(error: ValidationError, where: str) -> str:
    """One line per problem: the field, the value given, and what is allowed."""
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if not field:
            parts.append(message)
        elif item["type"] == "missing":
            parts.append(f"missing required field '{field}'")
        elif item["type"] == "extra_forbidden":
            parts.append(f"unknown field '{field}' (value {item['input']!r})")
        else:
            parts.append(f"field '{field}' = {item['input']!r}: {message}")
    return f"{where}: " + "; ".join(parts)


def validate_model(model_class: type[BaseModel], values: dict[str, Any], where: str) -> Any:
    """Build ``model_class`` from ``values``, raising ConfigError that names ``where``."""
    try:
        return model_class.model_validate(values)
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, where)) from None


MAX_TENSOR_ELEMENTS = 2**40


def _whole_number(value: Any) -> Any:
    # pydantic reads True as 1; a size or count given as a boolean is a mistake, not a number.
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    # An integral float of any size becomes an int here, so the size bound (not a parse error) judges it.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# A positive whole number. Integers, strings of digits (command-line flags) and integral floats
# such as 8.0 (cfg.json files written by other tools) are accepted; booleans are not.
PositiveCount = Annotated[int, BeforeValidator(_whole_number), Field(gt=0)]


def check_tensor_size(d_in: int, d_sae: int) -> None:
    """An SAE's weight matrix must be allocatable: ``d_in * d_sae`` at most ``MAX_TENSOR_ELEMENTS``."""
    if d_in * d_sae > MAX_TENSOR_ELEMENTS:
        raise ValueError(f"d_in * d_sae = {d_in} * {d_sae} = {d_in * d_sae:.3g} elements per weight matrix; "
                         f"allowed: at most 2**40 ({MAX_TENSOR_ELEMENTS:.3g})")


def architecture_name(value: Any, where: str) -> str:
    """The ``architecture`` key of a config: a registered name, so it must be a string."""
    if not isinstance(value, str):
        raise ConfigError(f"{where}: field 'architecture' = {value!r}: must be an architecture name (a string, "
                          "such as 'standard' or 'topk')")
    return value


def warn_close_unknown_keys(keys: Iterable[str], known: Iterable[str], where: str) -> None:
    """Unknown keys are kept (other tools write extra keys), but one close to a field is likely a typo."""
    known_by_lower = {name.lower(): name for name in known}
    for key in keys:
        close = difflib.get_close_matches(str(key).lower(), list(known_by_lower), n=1, cutoff=0.8)
        if close:
            warnings.warn(f"{where}: unknown key {key!r} is kept in metadata; did you mean "
                          f"{known_by_lower[close[0]]!r}?", UserWarning, stacklevel=3)
