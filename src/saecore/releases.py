"""Resolve ``SAE.from_pretrained(release, sae_id)`` to a Hub repo, a folder and a converter.

Releases come from plugins through the ``saecore_register_releases`` hook; the core's own
directory (``saecore/data/pretrained_releases.json``) registers through it too. A name that
is not a known release but looks like ``owner/repo`` is taken as a Hub repo id, with
``sae_id`` as the folder inside it. When that repo is in the directory under a release
name, the load still works, uses the release's converter and metadata, and warns with the
release name to use instead (SAELens's habit: the directory carries facts the files lack).

A release loads when a converter for its format is registered, and the architectures its
SAEs need are; ``missing_plugins`` says what is missing and which package provides it, for
``saecore releases`` and for the error ``from_pretrained`` raises before any download.
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
import warnings
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from saecore.errors import UnknownNameError, UnknownReleaseError
from saecore.known_plugins import ARCHITECTURE_PACKAGES, CONVERTER_PACKAGES, TRANSCODERS_PACKAGE, install_hint
from saecore.registry import ReleaseEntry, get_registry

DEFAULT_CONVERSION = "sae_lens"
# Per-SAE directory facts that become config values of the loaded SAE (its metadata).
_SAE_FIELDS_TO_CONFIG = {"hook_name": "hook_name", "neuronpedia": "neuronpedia_id"}


@dataclass(frozen=True)
class PretrainedTarget:
    repo_id: str
    folder: str
    conversion: str = DEFAULT_CONVERSION
    norm_scaling_factor: float | None = None
    revision: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)


def resolve_release(release: str, sae_id: str) -> PretrainedTarget:
    """Where ``sae_id`` of ``release`` (a release name or a Hub repo id) lives, and how to read it."""
    releases = get_registry().releases
    if release in releases:
        return _target_in_release(releases[release], sae_id)
    if "/" in release:
        return _target_in_repo(release, sae_id, releases)
    close = difflib.get_close_matches(release, list(releases), n=5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownReleaseError(
        f"{release!r} is neither a known release nor a Hugging Face repo id (owner/name).{hint}"
    )


def find_releases(pattern: str | None = None) -> list[ReleaseEntry]:
    """Registered releases whose name, repo id or model matches ``pattern``, sorted by name.

    A pattern with ``*``, ``?`` or ``[`` is a shell glob on the release name; any other
    pattern is a case-insensitive substring of the name, the repo id or the model.
    """
    entries = sorted(get_registry().releases.values(), key=lambda entry: entry.name)
    if not pattern:
        return entries
    needle = pattern.lower()
    if any(char in pattern for char in "*?["):
        return [entry for entry in entries if fnmatch.fnmatchcase(entry.name.lower(), needle)]
    return [
        entry for entry in entries
        if any(needle in str(text).lower() for text in (entry.name, entry.repo_id, entry.fields.get("model", "")))
    ]


def release_conversion(entry: ReleaseEntry) -> str:
    """The converter name of the format a release is published in."""
    return str(entry.fields.get("conversion") or DEFAULT_CONVERSION)


def missing_plugins(entry: ReleaseEntry) -> list[str]:
    """What keeps the release from loading with the installed plugins, one line each; empty when it loads.

    A release needs a converter for its format and, where the directory records them
    (``architectures``), the architectures its SAEs load as; for the others the
    architecture is read from each SAE's files when it loads.
    """
    registry = get_registry()
    conversion = release_conversion(entry)
    missing = [] if conversion in registry.converters else [format_needs(conversion)]
    for architecture in entry.fields.get("architectures") or ():
        if architecture not in registry.architectures:
            package = ARCHITECTURE_PACKAGES.get(architecture)
            provider = install_hint(package) if package else "no installed plugin provides it"
            missing.append(f"architecture {architecture!r} is not installed ({provider})")
    return missing


def format_needs(conversion: str) -> str:
    """Why no converter reads ``conversion``, and the package that provides one where known."""
    package = CONVERTER_PACKAGES.get(conversion)
    if package is None:
        installed = ", ".join(sorted(get_registry().converters)) or "none"
        return f"no installed plugin reads the {conversion!r} format (converters installed: {installed})"
    needs = (f"transcoder support, a {TRANSCODERS_PACKAGE} plugin package" if package == TRANSCODERS_PACKAGE
             else f"the {package} plugin package")
    if _is_installed(package):
        return f"the {conversion!r} format needs {needs}; {package} is installed but registers no converter for it"
    return f"the {conversion!r} format needs {needs}: {install_hint(package)}"


def release_converter(release: str, conversion: str) -> Any:
    """The registered converter for ``conversion``; an error naming what to install when none is."""
    registry = get_registry()
    if conversion not in registry.converters:
        raise UnknownNameError(f"release {release!r} cannot be loaded: {format_needs(conversion)}")
    return registry.converter(conversion)


def _is_installed(package: str) -> bool:
    try:
        distribution(package)
    except PackageNotFoundError:
        return False
    return True


def _target_in_release(entry: ReleaseEntry, sae_id: str) -> PretrainedTarget:
    if sae_id not in entry.saes:
        close = difflib.get_close_matches(sae_id, list(entry.saes), n=5)
        listed = close or list(entry.saes)[:5]
        hint = f"; did you mean {', '.join(listed)}?" if close else f"; valid ids include {', '.join(listed)}"
        raise UnknownReleaseError(f"sae_id {sae_id!r} is not in release {entry.name!r}{hint}")
    sae = entry.saes[sae_id]
    overrides = release_config(entry)
    overrides.update({key: sae[name] for name, key in _SAE_FIELDS_TO_CONFIG.items() if sae.get(name) is not None})
    return PretrainedTarget(
        repo_id=entry.repo_id,
        folder=str(sae.get("path", sae_id)),
        conversion=release_conversion(entry),
        norm_scaling_factor=sae.get("norm_scaling_factor"),
        revision=entry.fields.get("revision"),
        config_overrides=overrides,
    )


def _target_in_repo(repo_id: str, folder: str, releases: dict[str, ReleaseEntry]) -> PretrainedTarget:
    matching = [entry for entry in sorted(releases.values(), key=lambda e: e.name) if entry.repo_id == repo_id]
    if not matching:
        return PretrainedTarget(repo_id=repo_id, folder=folder)
    wanted = folder.strip("/")
    for entry in matching:
        for sae_id, sae in entry.saes.items():
            if str(sae.get("path", sae_id)).strip("/") == wanted:
                _warn_repo_id_used(repo_id, [entry.name], f"SAE.from_pretrained({entry.name!r}, {sae_id!r})")
                return _target_in_release(entry, sae_id)
    names = [entry.name for entry in matching]
    _warn_repo_id_used(repo_id, names, f"SAE.from_pretrained({names[0]!r}, '<sae_id>')")
    first = matching[0]
    return PretrainedTarget(
        repo_id=repo_id,
        folder=folder,
        conversion=release_conversion(first),
        revision=first.fields.get("revision"),
        config_overrides=release_config(first),
    )


def release_config(entry: ReleaseEntry) -> dict[str, Any]:
    """Config values a release sets on each of its SAEs: its ``config_facts``, then its ``config_overrides``."""
    return {**(entry.fields.get("config_facts") or {}), **(entry.fields.get("config_overrides") or {})}


def _warn_repo_id_used(repo_id: str, release_names: list[str], suggestion: str) -> None:
    warnings.warn(
        f"{repo_id!r} is a Hugging Face repo id; the release directory lists this repo as "
        f"{', '.join(release_names)}. Loading it with that release's format and metadata; "
        f"to say so directly, use {suggestion} (list releases with `saecore releases`).",
        UserWarning,
        stacklevel=_stacklevel_of_user_code(),
    )


def _stacklevel_of_user_code() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside saecore."""
    package = str(Path(__file__).resolve().parent)
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level
