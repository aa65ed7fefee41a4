"""Read cfg.json files written before SAELens 6.0.

Old files keep LLM facts at the top level (``hook_point``, ``model_name``), mark TopK
through ``activation_fn_kwargs.k``, and store ``normalize_activations`` as a boolean.
"""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version

from saecore.config.metadata import KNOWN_METADATA_KEYS
from saecore.errors import ConfigError

_RENAMED_KEYS = {
    "hook_point": "hook_name",
    "hook_point_head_index": "hook_head_index",
    "hook_point_layer": "hook_layer",
    "activation_fn_str": "activation_fn",
}
_V6_CORE_KEYS = {"d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
                 "reshape_activations", "architecture", "metadata"}


def is_pre_v6_config(cfg: dict[str, Any]) -> bool:
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    if "saecore_version" in metadata:
        return False
    version = cfg.get("sae_lens_version") or metadata.get("sae_lens_version")
    if not version:
        return "metadata" not in cfg
    try:
        return Version(str(version)) < Version("6.0.0rc0")
    except InvalidVersion:
        return False


def _mapping(old: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = old.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: field '{key}' = {value!r}: must be a mapping of names to values")
    return value


def upgrade_pre_v6_config(cfg: dict[str, Any], where: str = "cfg.json") -> dict[str, Any]:
    """Return a v6-shaped copy: LLM keys moved into metadata, TopK and booleans mapped."""
    old = {_RENAMED_KEYS.get(k, k): v for k, v in cfg.items()}
    kwargs = _mapping(old, "activation_fn_kwargs", where)
    architecture = old.get("architecture", "standard")
    if old.get("activation_fn") == "topk":
        # A TopK SAE without k cannot be rebuilt (SAELens before 6.0 failed on it too).
        if kwargs.get("k") is None:
            raise ConfigError(f"{where}: activation_fn 'topk' needs activation_fn_kwargs.k (the number of active "
                              f"latents), but activation_fn_kwargs = {old.get('activation_fn_kwargs')!r}")
        architecture = "topk"
        old["k"] = kwargs["k"]
    normalize = old.get("normalize_activations")
    if isinstance(normalize, bool) or normalize is None:
        normalize = "expected_average_only_in" if normalize else "none"
    hook_name = old.get("hook_name") or ""
    if not isinstance(hook_name, str):
        raise ConfigError(f"{where}: field 'hook_point' = {hook_name!r}: must be a hook name (a string such as "
                          "'blocks.0.hook_resid_pre')")
    new: dict[str, Any] = {
        "d_in": old.get("d_in"),
        "d_sae": old.get("d_sae"),
        "dtype": old.get("dtype", "float32"),
        "device": old.get("device", "cpu"),
        "apply_b_dec_to_input": old.get("apply_b_dec_to_input", True),
        "normalize_activations": normalize,
        "reshape_activations": old.get("reshape_activations", "hook_z" if "hook_z" in hook_name else "none"),
        "architecture": architecture,
    }
    if "k" in old:
        new["k"] = old["k"]
    if "rescale_acts_by_decoder_norm" in old:
        new["rescale_acts_by_decoder_norm"] = old["rescale_acts_by_decoder_norm"]
    metadata = dict(_mapping(old, "metadata", where))
    for key, value in old.items():
        if key in KNOWN_METADATA_KEYS and key not in metadata:
            metadata[key] = value
    metadata.setdefault("prepend_bos", True)
    new["metadata"] = metadata
    return {k: v for k, v in new.items() if v is not None or k in _V6_CORE_KEYS}
