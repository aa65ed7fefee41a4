"""SAELens v6's runner API for language models, on top of the core's model-agnostic runner.

``LanguageModelSAERunnerConfig`` keeps SAELens's flat shape (``sae=...``,
``logger=LoggingConfig(...)``, ``model_name``, ``hook_name``, ``dataset_path``, trainer
fields ...) and accepts every field of SAELens 6.54's, so SAELens training scripts run
with only their import line changed. It maps onto the core's ``TrainingRunnerConfig``
with ``source=LLMSourceConfig(...)`` (or the ``cached`` source with
``use_cached_activations``), and ``LanguageModelSAETrainingRunner`` runs that with the
core runner: the seed reaches every RNG (torch, random, numpy, and the source's shuffle).

``dtype`` is the SAE's dtype, as in SAELens ("the data type to use for the SAE"); it is
applied unless the SAE config sets its own. The language model's weights take
``model_dtype``. SAELens's names for the core's settings: ``compile_sae`` /
``sae_compilation_mode`` are ``compile_training_step`` / ``compile_mode``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from saecore.config.sae_config import TrainingSAEConfig
from saecore.config.validation import describe_validation_error, validate_model
from saecore.dtypes import canonical_dtype_name
from saecore.errors import ConfigError
from saecore.sources.base import SourceConfig
from saecore.sources.cached import CachedSourceConfig
from saecore.training import LoggingConfig, TrainerConfig, TrainingRunner, TrainingRunnerConfig, TrainingSummary
from saecore.training_sae import TrainingSAE
from saecore.version import SAELENS_VERSION
from saecore_source_llm.config import LanguageModelFields, LLMSourceConfig, reject_unknown_fields

T_TRAINING_SAE_CONFIG = TypeVar("T_TRAINING_SAE_CONFIG", bound=TrainingSAEConfig)

HOOK_EVAL_UNUSED = "NOT_IN_USE"
DEAD_FEATURE_THRESHOLD_DEFAULT = 1e-8


def warn_dead_feature_threshold(value: float) -> None:
    """``dead_feature_threshold`` has no effect (nor in SAELens): say so when it is set."""
    if value != DEAD_FEATURE_THRESHOLD_DEFAULT:
        warnings.warn(f"dead_feature_threshold={value} has no effect (SAELens does not read it either); a latent "
                      "is dead after dead_feature_window steps without firing", UserWarning, stacklevel=3)


def default_cached_activations_path(dataset_path: str, model_name: str, hook_name: str,
                                    hook_head_index: int | None) -> str:
    """SAELens's default cache folder: ``activations/{dataset}/{model}/{hook_name}[_{hook_head_index}]``."""
    path = f"activations/{dataset_path.replace('/', '_')}/{model_name.replace('/', '_')}/{hook_name}"
    return path if hook_head_index is None else f"{path}_{hook_head_index}"


class LanguageModelSAERunnerConfig(TrainerConfig, LanguageModelFields, Generic[T_TRAINING_SAE_CONFIG]):
    """One SAE trained on one hook of one language model (SAELens v6's config shape).

    Generic in the SAE config, as in SAELens: ``LanguageModelSAERunnerConfig[StandardTrainingSAEConfig]``.
    """

    sae: SerializeAsAny[T_TRAINING_SAE_CONFIG] = Field(
        description="The training recipe's config (picks the recipe)."
    )
    logger: LoggingConfig = Field(default_factory=LoggingConfig)
    dtype: str = Field(default="float32", description="The SAE's dtype unless the sae config sets one.")
    use_cached_activations: bool = Field(
        default=False, description="Train on activations cached on disk (the cached source) instead of the model."
    )
    cached_activations_path: str | None = Field(
        default=None,
        description="The cache folder with use_cached_activations (None: "
        "activations/{dataset_path}/{model_name}/{hook_name}[_{hook_head_index}], '/' replaced by '_').",
    )
    from_pretrained_path: str | None = Field(
        default=None, description="A saved SAE folder to fine-tune: its weights and config replace a fresh SAE."
    )
    compile_sae: bool = Field(default=False, description="SAELens's name for compile_training_step.")
    sae_compilation_mode: str | None = Field(default=None, description="SAELens's name for compile_mode.")
    hook_eval: str = Field(default=HOOK_EVAL_UNUSED, description="Deprecated in SAELens and unused; ignored.")
    dead_feature_threshold: float = Field(
        default=DEAD_FEATURE_THRESHOLD_DEFAULT,
        description="Accepted and ignored (SAELens 6.54 does not read it either): a latent is dead when it has not "
        "fired for dead_feature_window steps.",
    )
    sae_lens_version: str = Field(default=SAELENS_VERSION, description="Recorded in runner_cfg.json, as in SAELens.")
    sae_lens_training_version: str = Field(
        default=SAELENS_VERSION, description="Recorded in runner_cfg.json, as in SAELens."
    )

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields_named_with_close_matches(cls, values: Any) -> Any:
        return reject_unknown_fields(values, cls.model_fields)

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
    def _buffer_serves_batches(self) -> LanguageModelSAERunnerConfig[T_TRAINING_SAE_CONFIG]:
        if not self.use_cached_activations:
            self.check_train_batch_size(self.train_batch_size_tokens)
        if "dtype" in self.model_fields_set and "dtype" in self.sae.model_fields_set and self.dtype != self.sae.dtype:
            raise ValueError(f"dtype={self.dtype!r} but sae.dtype={self.sae.dtype!r}; set one of them")
        return self

    @model_validator(mode="after")
    def _warn_about_fields_without_effect(self) -> LanguageModelSAERunnerConfig[T_TRAINING_SAE_CONFIG]:
        if self.hook_eval != HOOK_EVAL_UNUSED:
            warnings.warn(f"hook_eval={self.hook_eval!r} has no effect (deprecated in SAELens and unused there too); "
                          "remove it", DeprecationWarning, stacklevel=2)
        warn_dead_feature_threshold(self.dead_feature_threshold)
        return self

    @property
    def resolved_cached_activations_path(self) -> str:
        """``cached_activations_path``, or SAELens's default folder for this dataset, model and hook."""
        if self.cached_activations_path is not None:
            return self.cached_activations_path
        return default_cached_activations_path(self.dataset_path, self.model_name, self.hook_name,
                                               self.hook_head_index)

    def get_training_sae_cfg_dict(self) -> dict[str, Any]:
        """The training SAE's config as a dict (``TrainingSAE.from_dict`` builds the SAE from it)."""
        return self.sae_config().to_dict()

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

    def to_runner_config(
        self, *, model: Any = None, dataset: Any = None, sae: TrainingSAEConfig | None = None
    ) -> TrainingRunnerConfig:
        """The core runner's config for this run; ``sae`` replaces the SAE config (a given SAE's own)."""
        trainer = {name: getattr(self, name) for name in TrainerConfig.model_fields if name in self.model_fields_set}
        if self.compile_sae:
            trainer["compile_training_step"] = True
        if self.sae_compilation_mode is not None:
            trainer["compile_mode"] = self.sae_compilation_mode
        source: SourceConfig = (
            CachedSourceConfig(path=self.resolved_cached_activations_path) if self.use_cached_activations
            else self.source_config(model=model, dataset=dataset)
        )
        return TrainingRunnerConfig(sae=sae if sae is not None else self.sae_config(), source=source,
                                    logger=self.logger, **trainer)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``from_dict`` turns back into this config (objects become placeholders)."""
        result = self.model_dump(mode="json", exclude={"sae"}, fallback=lambda value: f"<{type(value).__name__}>")
        result["sae"] = self.sae.to_dict()
        return result

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LanguageModelSAERunnerConfig[Any]:
        config: LanguageModelSAERunnerConfig[Any] = validate_model(cls, dict(values), "LanguageModelSAERunnerConfig")
        return config


class LanguageModelSAETrainingRunner:
    """Trains the SAE ``cfg`` describes on the language model's activations.

    ``override_model`` / ``override_dataset`` / ``override_sae`` (SAELens's arguments)
    supply a loaded model, a ``datasets`` object or a training SAE instead of the ones
    ``cfg`` names. Without ``override_sae``, ``cfg.from_pretrained_path`` names a saved SAE
    to fine-tune. A given SAE is trained as it is, with its own config (``cfg.sae`` is
    then not used).
    """

    def __init__(
        self,
        cfg: LanguageModelSAERunnerConfig[Any],
        override_dataset: Any = None,
        override_model: Any = None,
        override_sae: TrainingSAE[Any] | None = None,
    ) -> None:
        self.cfg = cfg
        sae = override_sae
        if sae is None and cfg.from_pretrained_path is not None:
            sae = TrainingSAE.load_from_disk(cfg.from_pretrained_path, device=cfg.device)
        self.runner_cfg = cfg.to_runner_config(model=override_model, dataset=override_dataset,
                                               sae=sae.cfg if sae is not None else None)
        self.runner = TrainingRunner(self.runner_cfg, sae=sae)

    def run(self) -> TrainingSAE[Any]:
        """Train, write the SAE to ``output_path``, and return the trained SAE."""
        return self.runner.run()

    @property
    def summary(self) -> TrainingSummary | None:
        return self.runner.summary


class SAETrainingRunner(LanguageModelSAETrainingRunner):
    """SAELens's old name for :class:`LanguageModelSAETrainingRunner`; deprecated."""

    def __init__(
        self,
        cfg: LanguageModelSAERunnerConfig[Any],
        override_dataset: Any = None,
        override_model: Any = None,
        override_sae: TrainingSAE[Any] | None = None,
    ) -> None:
        warnings.warn("SAETrainingRunner is deprecated; use LanguageModelSAETrainingRunner", DeprecationWarning,
                      stacklevel=2)
        super().__init__(cfg, override_dataset=override_dataset, override_model=override_model,
                         override_sae=override_sae)
