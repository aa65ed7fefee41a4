"""Construction by name: from a cfg's ``architecture``, a format's name or a release's name to a built SAE.

Every path that turns a name into an SAE goes through here: ``SAE.from_dict``,
``SAE.load_from_disk``, ``SAE.from_pretrained`` and their ``TrainingSAE`` forms are
one-line delegators to these functions. The resolver sits above the registry, the
config models and the file format, and below the SAE contracts: it builds whatever class
the registry names and needs nothing from ``saecore.sae`` itself, so the contracts can
call it without an import cycle.

``training`` picks the registry table: an inference architecture, or a training recipe
of that name (resuming or fine-tuning from a checkpoint, as SAELens's
``TrainingSAE.load_from_disk`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saecore.config.sae_config import SAEConfig
from saecore.config.validation import architecture_name
from saecore.dtypes import canonical_dtype_name
from saecore.errors import ConfigError, SAEFileError, UnknownNameError
from saecore.io.converters import ConvertedSAE, folder_locator
from saecore.io.hub import hub_locator
from saecore.io.pretrained_loaders import PretrainedSaeDiskLoader, PretrainedSaeHuggingfaceLoader
from saecore.io.sae_files import check_tensors_match, drop_identity_scaling_factor, normalize_cfg_dict
from saecore.registry import get_registry
from saecore.releases import release_converter, resolve_release

# cfg fields that fix the tensors an SAE holds: a directory override of one cannot disagree with the files.
_WEIGHT_SHAPING_FIELDS = ("architecture", "d_in", "d_sae", "d_out")


def classes_named(architecture: str, *, training: bool) -> tuple[Any, Any]:
    """``(SAE class, config class)`` registered under ``architecture`` (a training recipe with ``training``)."""
    registry = get_registry()
    if training:
        recipe = registry.training_recipe(architecture)
        return recipe.training_sae_class, recipe.training_config_class
    entry = registry.architecture(architecture)
    return entry.sae_class, entry.config_class


def sae_from_dict(config_dict: dict[str, Any], *, use_error_term: bool = False, training: bool = False) -> Any:
    """Build, with fresh weights, the SAE class named by ``config_dict["architecture"]``."""
    sae_class, config_class = classes_named(config_dict.get("architecture", ""), training=training)
    return sae_class(config_class.from_dict(config_dict), use_error_term=use_error_term)


def build_sae(
    cfg_dict: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    *,
    device: str,
    dtype: str | None,
    cfg_source: str,
    weights_source: str,
    training: bool = False,
) -> Any:
    """Instantiate the class named by cfg_dict["architecture"] and load ``state_dict`` into it."""
    try:
        cfg_dict = normalize_cfg_dict(cfg_dict, cfg_source)
        architecture = architecture_name(cfg_dict["architecture"], cfg_source) if "architecture" in cfg_dict else None
    except ConfigError as error:
        raise SAEFileError(str(error)) from None
    if dtype is not None:
        cfg_dict["dtype"] = canonical_dtype_name(dtype, field="dtype argument")
    if architecture is None:
        raise SAEFileError(f"{cfg_source}: missing required key 'architecture'")
    try:
        sae_class, config_class = classes_named(architecture, training=training)
    except UnknownNameError as error:
        raise UnknownNameError(f"{cfg_source}: {error}") from None
    try:
        cfg = config_class.from_dict({**cfg_dict, "device": "meta"}, where=cfg_source)
    except ConfigError as error:
        raise SAEFileError(str(error)) from None
    assert isinstance(cfg, SAEConfig)
    sae = sae_class(cfg)
    drop_identity_scaling_factor(state_dict, weights_source)
    try:
        sae.process_state_dict_for_loading(state_dict)
    except SAEFileError as error:
        raise SAEFileError(f"{weights_source}: {error}") from None
    check_tensors_match(sae.state_dict(), state_dict, cfg_dict, weights_source)
    sae.load_state_dict(state_dict, assign=True)
    sae.cfg.device = device
    return sae.to(device=device, dtype=sae.dtype)


def load_sae_folder(
    folder: Path,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    fold_W_dec_norm: bool = False,
    training: bool = False,
    converter: str | PretrainedSaeDiskLoader = "sae_lens",
) -> tuple[Any, dict[str, Any], torch.Tensor | None]:
    """Load an SAE folder (or file, for one-file formats) in the named format, or through a SAELens-style
    disk loader callable.

    Returns ``(sae, cfg_dict, log_sparsity or None)`` (no log sparsity from a callable).
    """
    if not folder.exists():
        raise SAEFileError(f"{folder}: no such SAE folder or file")
    if callable(converter):
        cfg_dict, state_dict = converter(folder, device, cfg_overrides={"dtype": dtype} if dtype is not None else None)
        source = f"{_loader_name(converter)}({str(folder)!r})"
        converted = ConvertedSAE(cfg_dict, state_dict, None, cfg_source=source, weights_source=source)
    else:
        converted = get_registry().converter(converter).convert(folder_locator(folder))
    sae = build_sae(converted.cfg_dict, converted.state_dict, device=device, dtype=dtype,
                    cfg_source=converted.cfg_source, weights_source=converted.weights_source, training=training)
    if fold_W_dec_norm:
        sae.fold_W_dec_norm()
    return sae, sae.cfg.to_dict(), converted.sparsity


def load_pretrained(
    release: str,
    sae_id: str,
    *,
    device: str = "cpu",
    dtype: str = "float32",
    force_download: bool = False,
    fold_W_dec_norm: bool = False,
    revision: str | None = None,
    converter: str | PretrainedSaeHuggingfaceLoader | None = None,
) -> tuple[Any, dict[str, Any], torch.Tensor | None]:
    """Resolve ``release``/``sae_id`` and load the SAE with its cfg dict and log sparsity.

    ``converter`` names a registered converter, or is a SAELens-style Hub loader callable,
    called as SAELens calls it (its ``cfg_overrides`` carry the release's overrides, device and dtype).
    """
    target = resolve_release(release, sae_id)
    if callable(converter):
        overrides = {**target.config_overrides, "device": device, "dtype": dtype}
        cfg_dict, state_dict, sparsity = converter(repo_id=target.repo_id, folder_name=target.folder, device=device,
                                                   force_download=force_download, cfg_overrides=overrides)
        source = f"{_loader_name(converter)}({target.repo_id!r}, {target.folder!r})"
        converted = ConvertedSAE(cfg_dict, state_dict, sparsity, cfg_source=source, weights_source=source)
    else:
        reader = release_converter(release, converter or target.conversion)
        locate = hub_locator(target.repo_id, target.folder, force_download=force_download,
                             revision=revision or target.revision)
        converted = reader.convert(locate)
    try:
        sae = build_sae(
            {**converted.cfg_dict, **target.config_overrides},
            converted.state_dict,
            device=device,
            dtype=dtype,
            cfg_source=converted.cfg_source,
            weights_source=converted.weights_source,
        )
    except SAEFileError as error:
        raise _blame_overrides(error, release, sae_id, target.config_overrides, converted) from None
    if sae.cfg.normalize_activations == "expected_average_only_in" and target.norm_scaling_factor is not None:
        sae.fold_activation_norm_scaling_factor(target.norm_scaling_factor)
    if fold_W_dec_norm:
        sae.fold_W_dec_norm()
    return sae, sae.cfg.to_dict(), converted.sparsity


def _blame_overrides(error: SAEFileError, release: str, sae_id: str, overrides: dict[str, Any],
                     converted: ConvertedSAE) -> SAEFileError:
    """The build error, naming the directory's overrides of the fields that shape the weights where they differ."""
    found = converted.cfg_dict
    contradicting = {key: value for key, value in overrides.items()
                     if key in _WEIGHT_SHAPING_FIELDS and found.get(key) != value}
    if not contradicting:
        return error
    described = ", ".join(
        f"{key}={value!r} (" + (f"the files say {found[key]!r}" if key in found else "the files do not set it") + ")"
        for key, value in contradicting.items())
    return SAEFileError(f"release {release!r}, sae_id {sae_id!r}: the directory's config override {described} "
                        f"contradicts the weights in {converted.weights_source}: {error}")


def _loader_name(loader: Any) -> str:
    """How errors name a loader callable: its function name, or its class's for a callable object."""
    return str(getattr(loader, "__name__", type(loader).__name__))
