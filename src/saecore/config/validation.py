"""Turn pydantic validation errors into one-line messages for people."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

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
