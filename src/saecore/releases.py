"""Resolve ``SAE.from_pretrained(release, sae_id)`` to a Hub repo, a folder and a converter.

Releases come from plugins through the ``saecore_register_releases`` hook; the core's own
directory (``saecore/data/pretrained_releases.json``) registers through it too. A name that
is not a known release but looks like ``owner/repo`` is taken as a Hub repo id, with
``sae_id`` as the folder inside it. When that repo is in the directory under a release
name, the load still works, uses the release's converter and metadata, and warns with the
release name to use instead (SAELens's habit: the directory carries facts the files lack).
"""

from __future__ import annotations

import difflib
import fnmatch
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saecore.errors import UnknownReleaseError
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


def _target_in_release(entry: ReleaseEntry, sae_id: str) -> PretrainedTarget:
    if sae_id not in entry.saes:
        close = difflib.get_close_matches(sae_id, list(entry.saes), n=5)
        listed = close or list(entry.saes)[:5]
        hint = f"; did you mean {', '.join(listed)}?" if close else f"; valid ids include {', '.join(listed)}"
        raise UnknownReleaseError(f"sae_id {sae_id!r} is not in release {entry.name!r}{hint}")
    sae = entry.saes[sae_id]
    overrides = dict(entry.fields.get("config_overrides") or {})
    overrides.update({key: sae[name] for name, key in _SAE_FIELDS_TO_CONFIG.items() if sae.get(name) is not None})
    return PretrainedTarget(
        repo_id=entry.repo_id,
        folder=str(sae.get("path", sae_id)),
        conversion=str(entry.fields.get("conversion") or DEFAULT_CONVERSION),
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
        conversion=str(first.fields.get("conversion") or DEFAULT_CONVERSION),
        revision=first.fields.get("revision"),
        config_overrides=dict(first.fields.get("config_overrides") or {}),
    )


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
