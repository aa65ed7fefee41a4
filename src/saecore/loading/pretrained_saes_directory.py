"""SAELens's pretrained-directory functions, answered from saecore's registry of releases.

The registry holds the core's directory (``saecore/data/``, SAELens's releases and saecore's
own) and every release a plugin registers, so these functions see both. The signatures,
return types and values are SAELens 6.54's: ``conversion_func`` is SAELens's name for the
format (None for SAELens's own), a missing L0 reads 0.0 and a missing variance explained 1.0,
and ``config_overrides`` are the release's as SAELens's directory records them. The config
values saecore applies beyond those (``config_facts``, an SAE's ``hook_name``) are not part
of this view.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from saecore.converters.saelens_format_names import conversion_func_name
from saecore.registry import Registry, ReleaseEntry, get_registry
from saecore.releases import DEFAULT_CONVERSION

_DEFAULT_VARIANCE_EXPLAINED = 1.0
_DEFAULT_L0 = 0.0


@dataclass
class PretrainedSAELookup:
    """One release as SAELens describes it: each field maps ``sae_id`` to one fact about that SAE."""

    release: str
    repo_id: str
    model: str
    conversion_func: str | None
    saes_map: dict[str, str]
    expected_var_explained: dict[str, float]
    expected_l0: dict[str, float]
    neuronpedia_id: dict[str, str]
    norm_scaling_factor: dict[str, float]
    config_overrides: dict[str, str] | dict[str, dict[str, str | bool | int]] | None


_built: tuple[Registry, dict[str, PretrainedSAELookup]] | None = None


def get_pretrained_saes_directory() -> dict[str, PretrainedSAELookup]:
    """Every registered release by name; built once per registry, as it reads every release's SAE table."""
    global _built
    registry = get_registry()
    if _built is None or _built[0] is not registry:
        _built = (registry, {name: _lookup_of(entry) for name, entry in registry.releases.items()})
    return _built[1]


def get_norm_scaling_factor(release: str, sae_id: str) -> float | None:
    """The directory's norm scaling factor for the SAE, or None (unknown release or SAE, or none recorded)."""
    entry = get_registry().releases.get(release)
    if entry is None or sae_id not in entry.saes:
        return None
    factor = entry.saes[sae_id].get("norm_scaling_factor")
    return None if factor is None else float(factor)


def get_repo_id_and_folder_name(release: str, sae_id: str) -> tuple[str, str]:
    """``(repo_id, folder)`` of the SAE; a name that is no release is taken as a repo id, ``sae_id`` as its folder.

    An ``sae_id`` missing from a known release is a ValueError naming the closest ids.
    """
    entry = get_registry().releases.get(release)
    if entry is None:
        return release, sae_id
    if sae_id not in entry.saes:
        close = difflib.get_close_matches(sae_id, list(entry.saes), n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"SAE ID '{sae_id}' not found in release '{release}'{hint}")
    return entry.repo_id, _path_of(entry, sae_id)


def get_config_overrides(release: str, sae_id: str) -> dict[str, Any]:
    """The release's config overrides and, for an SAE it lists, its Neuronpedia id (None when it has none)."""
    entry = get_registry().releases.get(release)
    if entry is None:
        return {}
    overrides = dict(entry.fields.get("config_overrides") or {})
    if sae_id in entry.saes:
        overrides["neuronpedia_id"] = entry.saes[sae_id].get("neuronpedia")
    return overrides


def get_releases_for_repo_id(repo_id: str) -> list[str]:
    """Names of the releases whose SAEs live in the Hub repo ``repo_id``, in directory order."""
    return [name for name, entry in get_registry().releases.items() if entry.repo_id == repo_id]


def _path_of(entry: ReleaseEntry, sae_id: str) -> str:
    return str(entry.saes[sae_id].get("path", sae_id))


def _lookup_of(entry: ReleaseEntry) -> PretrainedSAELookup:
    saes = entry.saes
    overrides = entry.fields.get("config_overrides")
    return PretrainedSAELookup(
        release=entry.name,
        repo_id=entry.repo_id,
        model=str(entry.fields.get("model", "")),
        conversion_func=conversion_func_name(str(entry.fields.get("conversion") or DEFAULT_CONVERSION)),
        saes_map={sae_id: _path_of(entry, sae_id) for sae_id in saes},
        expected_var_explained={sae_id: sae.get("variance_explained", _DEFAULT_VARIANCE_EXPLAINED)
                                for sae_id, sae in saes.items()},
        expected_l0={sae_id: sae.get("l0", _DEFAULT_L0) for sae_id, sae in saes.items()},
        neuronpedia_id={sae_id: sae.get("neuronpedia") for sae_id, sae in saes.items()},
        norm_scaling_factor={sae_id: sae["norm_scaling_factor"] for sae_id, sae in saes.items()
                             if "norm_scaling_factor" in sae},
        config_overrides=None if overrides is None else dict(overrides),
    )
