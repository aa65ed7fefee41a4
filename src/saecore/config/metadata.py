"""SAEMetadata: the open-ended bag of facts about where an SAE came from.

SAELens code reads ``cfg.metadata.hook_name`` and gets ``None`` when the key was never
set, so this is an attribute bag rather than a closed pydantic model: unknown keys are
kept (a cfg.json written by another tool loses nothing) and missing keys read as None.
As in SAELens, the version fields ``sae_lens_version`` and ``sae_lens_training_version``
are always set: to the values given, else to the SAELens version saecore follows. Saved
files need it: SAELens reads a cfg.json without ``sae_lens_version`` as pre-6.0 and drops
its nested metadata.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic_core import core_schema

from saecore.version import SAELENS_VERSION

VERSION_KEYS = ("sae_lens_version", "sae_lens_training_version")

KNOWN_METADATA_KEYS = (
    "sae_lens_version",
    "sae_lens_training_version",
    "saecore_version",
    "model_name",
    "hook_name",
    "hook_name_out",
    "hook_head_index",
    "context_size",
    "prepend_bos",
    "seqpos_slice",
    "model_from_pretrained_kwargs",
    "dataset_path",
    "model_class_name",
    "exclude_special_tokens",
    "sequence_separator_token",
    "disable_concat_sequences",
    "neuronpedia_id",
    "l0",
    "num_dead_features",
    "training_architecture",
    "training_architecture_details",
)


class SAEMetadata:
    """Attribute and mapping access to metadata; missing keys read as None."""

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_values", {key: SAELENS_VERSION for key in VERSION_KEYS} | values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._values.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __getitem__(self, key: str) -> Any:
        return self._values.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def keys(self) -> Any:
        return self._values.keys()

    def items(self) -> Any:
        return self._values.items()

    def values(self) -> Any:
        return self._values.values()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEMetadata:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SAEMetadata) and self._values == other._values

    def __repr__(self) -> str:
        return f"SAEMetadata({self._values!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> SAEMetadata:
        return SAEMetadata(**copy.deepcopy(self._values, memo))

    def __getstate__(self) -> dict[str, Any]:
        return self._values

    def __setstate__(self, state: dict[str, Any]) -> None:
        object.__setattr__(self, "_values", dict(state))

    @classmethod
    def _coerce(cls, value: Any) -> SAEMetadata:
        if isinstance(value, SAEMetadata):
            return value
        if value is None:
            return cls()
        if isinstance(value, Mapping):
            return cls(**{str(k): v for k, v in value.items()})
        raise ValueError(f"metadata must be a mapping of names to values, got {type(value).__name__}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda m: m.to_dict()),
        )
