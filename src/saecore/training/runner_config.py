"""The runner's config: the trainer's fields plus the SAE, the source and logging.

Shaped like SAELens's runner config so that code reads the same::

    TrainingRunnerConfig(
        sae=TopKTrainingSAEConfig(d_in=64, d_sae=512, k=8),
        source=SyntheticSourceConfig(d_in=64),
        logger=LoggingConfig(log_to_wandb=True),
        lr=4e-4, training_tokens=2_000_000,
    )

From a dict (a YAML/JSON file, runner_cfg.json), ``sae["architecture"]`` names the
training recipe and ``source["name"]`` the registered source; the registry picks the
config classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, SerializeAsAny, ValidationError, field_validator
from pydantic_core import PydanticSerializationError

from saecore.config.sae_config import TrainingSAEConfig
from saecore.config.validation import describe_validation_error, validate_model
from saecore.errors import ConfigError
from saecore.sources.base import SourceConfig
from saecore.training.logging_config import LoggingConfig
from saecore.training.trainer_config import TrainerConfig

SOURCE_NAME_KEY = "name"


def _default_source_config() -> SourceConfig:
    from saecore.registry import get_registry

    config: SourceConfig = get_registry().source("synthetic").config_class()
    return config


def registered_source_name(source_cfg: SourceConfig) -> str:
    """The name the source whose config class is ``type(source_cfg)`` is registered under."""
    from saecore.registry import get_registry

    sources = get_registry().sources
    for name, entry in sources.items():
        if entry.config_class is type(source_cfg):
            return name
    raise ConfigError(
        f"source: {type(source_cfg).__name__} is not the config class of any registered source "
        f"(registered: {', '.join(sorted(sources)) or 'none'}); register it through the "
        "saecore_register_sources hook, or pass the source object to TrainingRunner(cfg, source=...)"
    )


class TrainingRunnerConfig(TrainerConfig):
    """Everything one training run needs; ``to_dict()`` is what runner_cfg.json holds."""

    sae: SerializeAsAny[TrainingSAEConfig] = Field(description="The training recipe's config (picks the recipe).")
    source: SerializeAsAny[SourceConfig] = Field(
        default_factory=_default_source_config, description="Where activations come from."
    )
    logger: LoggingConfig = Field(default_factory=LoggingConfig)

    @field_validator("sae", mode="before")
    @classmethod
    def _sae_from_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        from saecore.registry import get_registry

        values = dict(value)
        if "architecture" not in values:
            installed = ", ".join(sorted(get_registry().training_recipes)) or "none"
            raise ValueError(f"needs 'architecture' naming a training recipe (installed: {installed})")
        config_class = get_registry().training_recipe(values.pop("architecture")).training_config_class
        return _validate_nested(config_class, values, "sae")

    @field_validator("source", mode="before")
    @classmethod
    def _source_from_mapping(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        from saecore.registry import get_registry

        values = dict(value)
        if SOURCE_NAME_KEY not in values:
            installed = ", ".join(sorted(get_registry().sources)) or "none"
            raise ValueError(f"needs '{SOURCE_NAME_KEY}' naming an activation source (installed: {installed})")
        config_class = get_registry().source(values.pop(SOURCE_NAME_KEY)).config_class
        return _validate_nested(config_class, values, "source")

    def trainer_config(self) -> TrainerConfig:
        """The trainer's own fields, without the SAE, source and logging sections."""
        return TrainerConfig.model_validate(self.model_dump(include=set(TrainerConfig.model_fields)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` turns back into this config.

        Source fields that JSON cannot hold (in-memory tensors) are written as
        ``"<Tensor>"``-style placeholders: the file then records the run but cannot
        rebuild that source.
        """
        result = self.model_dump(mode="json", exclude={"sae", "source"})
        result["sae"] = self.sae.to_dict()
        result["source"] = {SOURCE_NAME_KEY: registered_source_name(self.source), **jsonable_fields(self.source)}
        return result

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingRunnerConfig:
        """Build from a dict (runner_cfg.json, a YAML file), raising ConfigError naming the field."""
        config: TrainingRunnerConfig = validate_model(cls, dict(values), "training config")
        return config


def jsonable_fields(config: BaseModel) -> dict[str, Any]:
    """``model_dump(mode="json")``, with a ``"<TypeName>"`` placeholder for each field JSON cannot hold."""
    try:
        dumped: dict[str, Any] = config.model_dump(mode="json")
        return dumped
    except PydanticSerializationError:
        result: dict[str, Any] = {}
        for name in type(config).model_fields:
            try:
                result[name] = config.model_dump(mode="json", include={name})[name]
            except PydanticSerializationError:
                result[name] = f"<{type(getattr(config, name)).__name__}>"
        return result


def _validate_nested(config_class: type[Any], values: dict[str, Any], where: str) -> Any:
    try:
        return config_class.model_validate(values)
    except ValidationError as error:
        raise ValueError(describe_validation_error(error, where).removeprefix(f"{where}: ")) from None
