"""Config models of inference and training SAEs (SAELens v6 field names and defaults)."""

from __future__ import annotations

import difflib
import warnings
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from saecore.config.metadata import SAEMetadata
from saecore.config.training_presets import TrainingPresets
from saecore.config.validation import (
    PositiveCount,
    architecture_name,
    check_tensor_size,
    describe_validation_error,
    validate_model,
    warn_close_unknown_keys,
)
from saecore.dtypes import canonical_dtype_name
from saecore.errors import ConfigError
from saecore.registry import get_registry

NormalizeActivations = Literal[
    "none", "expected_average_only_in", "constant_norm_rescale", "layer_norm", "covariance_whitening"
]
ReshapeActivations = Literal["none", "hook_z"]


class SAEConfig(BaseModel):
    """Fields every inference SAE has; each architecture subclasses it.

    Subclasses set ``ARCHITECTURE`` to the name they register under; that name is the
    ``architecture`` key of cfg.json and picks the class at load time.

    ``PREDICTS_TARGET`` marks coders whose output is compared with a separate target
    activation rather than with their own input (transcoders, which add a ``d_out``
    field); the trainer then reads batches of ``(input, target)`` pairs.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, arbitrary_types_allowed=True)

    ARCHITECTURE: ClassVar[str] = ""
    PREDICTS_TARGET: ClassVar[bool] = False

    d_in: PositiveCount
    d_sae: PositiveCount
    dtype: str = "float32"
    device: str = "cpu"
    apply_b_dec_to_input: bool = True
    normalize_activations: NormalizeActivations = "none"
    reshape_activations: ReshapeActivations = "none"
    metadata: SAEMetadata = Field(default_factory=SAEMetadata)
    _assigned_names: set[str] = PrivateAttr(default_factory=set)

    def __init__(self, **data: Any) -> None:
        """Construct from keywords; a bad value raises a one-line ConfigError naming the field."""
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error, type(self).__name__)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        """Set a field (validated); any other public name that is not a class attribute goes to ``metadata``.

        SAELens configs are dataclasses, which take any attribute, and tools written for
        them (sae_bench) set their own (``cfg.hook_layer = 0``). Such a value is kept in
        ``metadata`` and reads back as an attribute, with a warning that names the field it
        is close to, in case it is a typo.
        """
        if name not in type(self).model_fields and not name.startswith("_") and not hasattr(type(self), name):
            self._keep_in_metadata(name, value)
            return
        try:
            super().__setattr__(name, value)
        except ValidationError as error:
            raise ConfigError(describe_validation_error(error, type(self).__name__)) from None

    def _keep_in_metadata(self, name: str, value: Any) -> None:
        where = type(self).__name__
        close = difflib.get_close_matches(name.lower(), list(type(self).model_fields), n=1, cutoff=0.8)
        hint = f"; did you mean the field {close[0]!r}?" if close else ""
        warnings.warn(f"{where}: {name!r} is not a field; its value is kept in metadata{hint}", UserWarning,
                      stacklevel=3)
        self.metadata[name] = value
        self.__pydantic_private__["_assigned_names"].add(name)

    def __getattr__(self, name: str) -> Any:
        """A name set by assignment that is not a field reads back from ``metadata``."""
        try:
            private = object.__getattribute__(self, "__pydantic_private__") or {}
        except AttributeError:  # not yet initialised (unpickling)
            private = {}
        if name in private.get("_assigned_names", ()):
            return self.metadata[name]
        return super().__getattr__(name)  # type: ignore[misc]

    # Marks __init__ as a plain wrapper so pydantic's own validation paths
    # (model_validate, nested models) do not route through it.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @field_validator("dtype", mode="before")
    @classmethod
    def _canonical_dtype(cls, value: Any) -> str:
        try:
            return canonical_dtype_name(value)
        except Exception as error:
            raise ValueError(str(error).removeprefix("dtype: ")) from None

    @model_validator(mode="after")
    def _allocatable(self) -> SAEConfig:
        check_tensor_size(self.d_in, self.d_sae)
        return self

    @classmethod
    def architecture(cls) -> str:
        return cls.ARCHITECTURE

    @property
    def d_target(self) -> int:
        """Width of what the output is compared with: the input's for an SAE, ``d_out`` for a transcoder."""
        return self.d_in

    def to_dict(self) -> dict[str, Any]:
        """The cfg.json dict: every field, the metadata as a dict, and ``architecture``."""
        result = self.model_dump(mode="json")
        result["metadata"] = self.metadata.to_dict()
        result["architecture"] = self.architecture()
        return result

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], where: str = "SAE config") -> SAEConfig:
        """Build the config class named by ``config_dict["architecture"]``.

        Keys that the class does not know are kept in ``metadata`` (SAELens files carry
        extra keys; nothing read is dropped). Outside of reading files, unknown fields
        are rejected by the model itself.
        """
        target = cls
        if "architecture" in config_dict and (cls is SAEConfig or not cls.ARCHITECTURE):
            target = get_registry().architecture(architecture_name(config_dict["architecture"], where)).config_class
        return target._from_known_and_extra(config_dict, where)

    @classmethod
    def _from_known_and_extra(cls, config_dict: dict[str, Any], where: str) -> Any:
        known = {k: v for k, v in config_dict.items() if k in cls.model_fields}
        try:
            metadata = SAEMetadata._coerce(config_dict.get("metadata"))
        except ValueError as error:
            raise ConfigError(f"{where}: field 'metadata' = {config_dict.get('metadata')!r}: {error}") from None
        unknown = [key for key in config_dict if key not in cls.model_fields and key != "architecture"]
        warn_close_unknown_keys(unknown, cls.model_fields, where)
        for key in unknown:
            if key not in metadata:
                metadata[key] = config_dict[key]
        known["metadata"] = metadata
        return validate_model(cls, known, where)


class TrainingSAEConfig(SAEConfig):
    """Fields every training recipe has.

    ``ARCHITECTURE`` is the recipe name (``saecore train --arch NAME``);
    ``inference_config_class()`` is what the trained SAE is saved as.
    """

    decoder_init_norm: float | None = Field(default=0.1, gt=0)

    @field_validator("normalize_activations")
    @classmethod
    def _trainable_normalization(cls, value: str) -> str:
        # Whitened SAEs load (the whitening is already folded into their weights), but the
        # trainer has no whitening estimator yet.
        if value == "covariance_whitening":
            raise ValueError("covariance_whitening is not supported for training; allowed: none, "
                             "expected_average_only_in, constant_norm_rescale, layer_norm")
        return value

    @classmethod
    def inference_config_class(cls) -> type[SAEConfig]:
        """The inference config this recipe saves as; by default the same-named architecture."""
        return get_registry().architecture(cls.architecture()).config_class

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """What ``saecore train --source synthetic`` uses for the fields the user leaves unset.

        ``d_sae`` is the width the SAE will have (the user's, or the CLI's default), for
        presets that depend on it. A recipe whose defaults suit the synthetic source keeps
        this empty default; see ``saecore.config.training_presets``.
        """
        return TrainingPresets()

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], where: str = "training SAE config") -> TrainingSAEConfig:
        target: type[TrainingSAEConfig] = cls
        if "architecture" in config_dict and not cls.ARCHITECTURE:
            name = architecture_name(config_dict["architecture"], where)
            target = get_registry().training_recipe(name).training_config_class
        return target._from_known_and_extra(config_dict, where)

    def training_architecture_details(self) -> dict[str, Any]:
        """Training-only fields, recorded in the saved SAE's metadata."""
        inference_fields = set(self.inference_config_class().model_fields)
        dumped = self.model_dump(mode="json")
        return {k: v for k, v in dumped.items() if k not in inference_fields and k != "metadata"}

    def to_inference_dict(self) -> dict[str, Any]:
        """The cfg.json of the inference SAE this recipe produces."""
        inference_class = self.inference_config_class()
        dumped = self.model_dump(mode="json")
        result = {k: dumped[k] for k in inference_class.model_fields if k in dumped and k != "metadata"}
        metadata = self.metadata.to_dict()
        metadata["training_architecture"] = self.architecture()
        metadata["training_architecture_details"] = self.training_architecture_details()
        result["metadata"] = metadata
        result["architecture"] = inference_class.architecture()
        return result

    def to_inference_config(self) -> SAEConfig:
        return self.inference_config_class()._from_known_and_extra(self.to_inference_dict(), "inference config")

    def add_training_info_to_metadata(self) -> None:
        """Record the recipe and its training-only fields in ``metadata``, as the saved SAE's cfg.json does."""
        self.metadata.training_architecture = self.architecture()
        self.metadata.training_architecture_details = self.training_architecture_details()

    # SAELens's names of the methods above (delegators, so a recipe's overrides apply to both names).
    def get_inference_config_class(self) -> type[SAEConfig]:
        return self.inference_config_class()

    def get_training_architecture_details(self) -> dict[str, Any]:
        return self.training_architecture_details()

    def get_inference_sae_cfg_dict(self) -> dict[str, Any]:
        """The inference fields with this config's values; a recipe's adjustments for saving
        (``to_inference_dict``, such as TopK's folded decoder norms) are not applied, as in SAELens."""
        return TrainingSAEConfig.to_inference_dict(self)
