"""SAELens v6's runner API for language models, on top of the core's model-agnostic runner.

``LanguageModelSAERunnerConfig`` keeps SAELens's flat shape (``sae=...``,
``logger=LoggingConfig(...)``, ``model_name``, ``hook_name``, ``dataset_path``, trainer
fields ...), so SAELens training scripts run with only their import line changed. It maps
onto the core's ``TrainingRunnerConfig`` with ``source=LLMSourceConfig(...)``, and
``LanguageModelSAETrainingRunner`` runs that with the core runner: the seed reaches every
RNG (torch, random, numpy, and the source's shuffle).

``dtype`` is the SAE's dtype, as in SAELens ("the data type to use for the SAE"); it is
applied unless the SAE config sets its own. The language model's weights take
``model_dtype``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from saecore.config.sae_config import TrainingSAEConfig
from saecore.config.validation import describe_validation_error, validate_model
from saecore.dtypes import canonical_dtype_name
from saecore.errors import ConfigError
from saecore.training import LoggingConfig, TrainerConfig, TrainingRunner, TrainingRunnerConfig, TrainingSummary
from saecore.training_sae import TrainingSAE
from saecore_source_llm.config import LanguageModelFields, LLMSourceConfig


class LanguageModelSAERunnerConfig(TrainerConfig, LanguageModelFields):
    """One SAE trained on one hook of one language model (SAELens v6's config shape)."""

    sae: SerializeAsAny[TrainingSAEConfig] = Field(description="The training recipe's config (picks the recipe).")
    logger: LoggingConfig = Field(default_factory=LoggingConfig)
    dtype: str = Field(default="float32", description="The SAE's dtype unless the sae config sets one.")

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
        try:
            return config_class.model_validate(values)
        except ValidationError as error:
            raise ValueError(describe_validation_error(error, "sae").removeprefix("sae: ")) from None

    @field_validator("dtype", mode="before")
    @classmethod
    def _canonical_dtype(cls, value: Any) -> Any:
        try:
            return canonical_dtype_name(value)
        except ConfigError as error:
            raise ValueError(str(error).removeprefix("dtype: ")) from None

    @model_validator(mode="after")
    def _buffer_serves_batches(self) -> LanguageModelSAERunnerConfig:
        self.check_train_batch_size(self.train_batch_size_tokens)
        if "dtype" in self.model_fields_set and "dtype" in self.sae.model_fields_set and self.dtype != self.sae.dtype:
            raise ValueError(f"dtype={self.dtype!r} but sae.dtype={self.sae.dtype!r}; set one of them")
        return self

    def sae_config(self) -> TrainingSAEConfig:
        """``sae`` with ``dtype`` applied (a copy; ``sae`` is never changed)."""
        if "dtype" in self.sae.model_fields_set:
            return self.sae
        return self.sae.model_copy(update={"dtype": self.dtype})

    def source_config(self, *, model: Any = None, dataset: Any = None) -> LLMSourceConfig:
        """The ``llm`` source's config; ``model``/``dataset`` objects replace the named ones."""
        values = {name: getattr(self, name) for name in LanguageModelFields.model_fields
                  if name in self.model_fields_set}
        values["verbose"] = self.verbose
        if model is not None:
            values["model"] = model
        if dataset is not None:
            values["dataset"] = dataset
        return LLMSourceConfig(**values)

    def to_runner_config(self, *, model: Any = None, dataset: Any = None) -> TrainingRunnerConfig:
        """The core runner's config for this run."""
        trainer = {name: getattr(self, name) for name in TrainerConfig.model_fields if name in self.model_fields_set}
        return TrainingRunnerConfig(sae=self.sae_config(), source=self.source_config(model=model, dataset=dataset),
                                       logger=self.logger, **trainer)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` turns back into this config (objects become placeholders)."""
        result = self.model_dump(mode="json", exclude={"sae"}, fallback=lambda value: f"<{type(value).__name__}>")
        result["sae"] = self.sae.to_dict()
        return result

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LanguageModelSAERunnerConfig:
        config: LanguageModelSAERunnerConfig = validate_model(cls, dict(values), "LanguageModelSAERunnerConfig")
        return config


class LanguageModelSAETrainingRunner:
    """Trains the SAE ``cfg`` describes on the language model's activations.

    ``override_model`` / ``override_dataset`` (SAELens's arguments) supply a loaded model
    or a ``datasets`` object instead of the ones ``cfg`` names.
    """

    def __init__(
        self, cfg: LanguageModelSAERunnerConfig, override_dataset: Any = None, override_model: Any = None
    ) -> None:
        self.cfg = cfg
        self.runner_cfg = cfg.to_runner_config(model=override_model, dataset=override_dataset)
        self.runner = TrainingRunner(self.runner_cfg)

    def run(self) -> TrainingSAE[Any]:
        """Train, write the SAE to ``output_path``, and return the trained SAE."""
        return self.runner.run()

    @property
    def summary(self) -> TrainingSummary | None:
        return self.runner.summary


class SAETrainingRunner(LanguageModelSAETrainingRunner):
    """SAELens's old name for :class:`LanguageModelSAETrainingRunner`; deprecated."""

    def __init__(
        self, cfg: LanguageModelSAERunnerConfig, override_dataset: Any = None, override_model: Any = None
    ) -> None:
        warnings.warn("SAETrainingRunner is deprecated; use LanguageModelSAETrainingRunner", DeprecationWarning,
                      stacklevel=2)
        super().__init__(cfg, override_dataset=override_dataset, override_model=override_model)
