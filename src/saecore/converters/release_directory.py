"""The core's directory of published SAE releases, shipped as ``saecore/data/pretrained_releases.json``.

The file maps each release name to ``repo_id``, ``model``, ``conversion`` (the converter
that reads its files), optional ``config_overrides`` and ``links``, and ``saes``: each
``sae_id`` to its ``path`` in the repo plus what is known about it (``l0``,
``variance_explained``, ``neuronpedia``, ``norm_scaling_factor``, ``hook_name``).

It is JSON rather than YAML because the registry reads it whenever it is built: parsing
~900 entries takes a millisecond as JSON and tens of milliseconds as YAML. One SAE per
line keeps it readable and its diffs small.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from saecore.errors import SAEFileError
from saecore.hookspecs import RegisterRelease

DIRECTORY_RESOURCE = "data/pretrained_releases.json"
FORMAT_VERSION = 1
_TOP_LEVEL_KEYS = ("repo_id", "saes")


@cache
def load_release_directory() -> dict[str, dict[str, Any]]:
    """The shipped directory, parsed once per process: ``{release: {repo_id, model, conversion, saes, ...}}``."""
    resource = resources.files("saecore").joinpath(DIRECTORY_RESOURCE)
    try:
        document = json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SAEFileError(f"saecore/{DIRECTORY_RESOURCE}: unreadable release directory ({error})") from None
    if document.get("format_version") != FORMAT_VERSION:
        raise SAEFileError(f"saecore/{DIRECTORY_RESOURCE}: format_version is {document.get('format_version')!r}; "
                           f"this saecore reads version {FORMAT_VERSION}")
    releases: dict[str, dict[str, Any]] = document["releases"]
    return releases


def register_release_directory(register: RegisterRelease) -> None:
    """Register every release of the shipped directory through the release hook's callback."""
    for name, release in load_release_directory().items():
        fields = {key: value for key, value in release.items() if key not in _TOP_LEVEL_KEYS}
        register(name, release["repo_id"], release["saes"], **fields)
