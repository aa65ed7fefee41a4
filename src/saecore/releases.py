"""Resolve ``SAE.from_pretrained(release, sae_id)`` to a Hub repo and folder.

Releases come from plugins through the ``saecore_register_releases`` hook. A name that
is not a known release but looks like ``owner/repo`` is taken as a Hub repo id, with
``sae_id`` as the folder inside it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from saecore.errors import UnknownNameError


@dataclass(frozen=True)
class PretrainedTarget:
    repo_id: str
    folder: str
    conversion: str = "sae_lens"
    norm_scaling_factor: float | None = None
    revision: str | None = None
    config_overrides: dict[str, Any] = field(default_factory=dict)


def resolve_release(release: str, sae_id: str) -> PretrainedTarget:
    from saecore.registry import get_registry

    releases = get_registry().releases
    if release in releases:
        entry = releases[release]
        if sae_id not in entry.saes:
            close = difflib.get_close_matches(sae_id, list(entry.saes), n=5)
            listed = close or list(entry.saes)[:5]
            hint = f"; did you mean {', '.join(listed)}?" if close else f"; valid ids include {', '.join(listed)}"
            raise UnknownNameError(f"sae_id {sae_id!r} is not in release {release!r}{hint}")
        sae = entry.saes[sae_id]
        return PretrainedTarget(
            repo_id=entry.repo_id,
            folder=str(sae.get("path", sae_id)),
            conversion=str(entry.fields.get("conversion", "sae_lens")),
            norm_scaling_factor=sae.get("norm_scaling_factor"),
            revision=entry.fields.get("revision"),
            config_overrides=dict(entry.fields.get("config_overrides") or {}),
        )
    if "/" in release:
        return PretrainedTarget(repo_id=release, folder=sae_id)
    close = difflib.get_close_matches(release, list(releases), n=5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"{release!r} is neither a known release nor a Hugging Face repo id (owner/name).{hint}"
    )
