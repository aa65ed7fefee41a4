"""The core's directory of published SAE releases, shipped in ``saecore/data/``.

Two parts, so that building the registry stays fast with ~14,000 SAEs listed:

- ``pretrained_releases.json``, the index: each release name to ``repo_id``, ``model``,
  ``conversion`` (the converter that reads its files), ``n_saes``, and where known
  ``architectures`` (what its SAEs load as, when the format fixes it), ``config_overrides``
  (SAELens's, unchanged), ``config_facts`` (config values the published files leave out
  and SAELens's directory does not record) and ``links``. One release per line.
- ``pretrained_releases/<release>.json``, one per release: each ``sae_id`` to its ``path``
  in the repo plus what is known about it (``l0``, ``variance_explained``, ``neuronpedia``,
  ``norm_scaling_factor``, ``hook_name``). One SAE per line. It is read the first time
  someone asks for an SAE of that release.

The registry reads the index whenever it is built (a few kB of JSON); a release's SAE
table costs nothing until it is used. ``scripts/build_release_directory.py`` writes both
parts from SAELens's ``pretrained_saes.yaml``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from saecore.errors import SAEFileError
from saecore.hookspecs import RegisterRelease

DIRECTORY_RESOURCE = "data/pretrained_releases.json"
SAE_TABLES_RESOURCE = "data/pretrained_releases"
FORMAT_VERSION = 2
RELEASE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NOT_REGISTERED_AS_FIELDS = ("repo_id", "n_saes")


@cache
def load_release_index() -> dict[str, dict[str, Any]]:
    """The shipped index, parsed once per process: ``{release: {repo_id, model, conversion, n_saes, ...}}``."""
    document = _read_json(DIRECTORY_RESOURCE)
    if document.get("format_version") != FORMAT_VERSION:
        raise SAEFileError(f"saecore/{DIRECTORY_RESOURCE}: format_version is {document.get('format_version')!r}; "
                           f"this saecore reads version {FORMAT_VERSION}")
    releases: dict[str, dict[str, Any]] = document["releases"]
    return releases


@cache
def load_sae_table(release: str) -> dict[str, dict[str, Any]]:
    """The SAEs of one shipped release, parsed on first use: ``{sae_id: {path, l0, ...}}``."""
    table: dict[str, dict[str, Any]] = _read_json(f"{SAE_TABLES_RESOURCE}/{release}.json")
    return table


class SAETable(Mapping[str, dict[str, Any]]):
    """A shipped release's SAEs by id; the file is read on the first lookup, while ``len`` reads nothing."""

    def __init__(self, release: str, size: int) -> None:
        self.release = release
        self._size = size

    def __getitem__(self, sae_id: str) -> dict[str, Any]:
        return load_sae_table(self.release)[sae_id]

    def __iter__(self) -> Iterator[str]:
        return iter(load_sae_table(self.release))

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"SAETable({self.release!r}, {self._size} SAEs)"


def register_release_directory(register: RegisterRelease) -> None:
    """Register every release of the shipped directory through the release hook's callback."""
    for name, release in load_release_index().items():
        fields = {key: value for key, value in release.items() if key not in _NOT_REGISTERED_AS_FIELDS}
        register(name, release["repo_id"], SAETable(name, release["n_saes"]), **fields)


def write_release_directory(releases: Mapping[str, Mapping[str, Any]], data_folder: Path) -> None:
    """Write ``{release: {repo_id, ..., saes: {sae_id: {...}}}}`` as the index and one SAE table per release.

    Tables of releases no longer listed are removed, so the folder holds exactly the directory.
    """
    tables = data_folder / Path(SAE_TABLES_RESOURCE).name
    tables.mkdir(parents=True, exist_ok=True)
    index_lines = []
    for name, release in releases.items():
        if not RELEASE_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"release name {name!r} must match {RELEASE_NAME_PATTERN.pattern} (it names a file)")
        saes = release["saes"]
        fields = {key: value for key, value in release.items() if key != "saes"}
        index_lines.append(f"  {json.dumps(name)}: {json.dumps({**fields, 'n_saes': len(saes)})}")
        sae_lines = [f"  {json.dumps(sae_id)}: {json.dumps(sae)}" for sae_id, sae in saes.items()]
        (tables / f"{name}.json").write_text("{\n" + ",\n".join(sae_lines) + "\n}\n", encoding="utf-8")
    for stale in tables.glob("*.json"):
        if stale.stem not in releases:
            stale.unlink()
    header = f'{{"format_version": {FORMAT_VERSION}, "releases": {{\n'
    (data_folder / Path(DIRECTORY_RESOURCE).name).write_text(header + ",\n".join(index_lines) + "\n}}\n",
                                                             encoding="utf-8")


def _read_json(resource_name: str) -> Any:
    resource = resources.files("saecore").joinpath(resource_name)
    try:
        return json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise SAEFileError(f"saecore/{resource_name}: unreadable release directory ({error})") from None
