"""Rebuild saecore's release directory (``src/saecore/data/``) from SAELens's ``pretrained_saes.yaml``.

Every SAELens release is written with the same repo, model, links, config overrides and
per-SAE path, L0, variance explained, Neuronpedia id and norm scaling factor. Its
``conversion_func`` becomes the name of the saecore converter that reads the format
(``saecore.converters.saelens_format_names``). What saecore's directory knows beyond
SAELens's is kept from the directory being replaced: releases SAELens does not list,
a release's ``config_facts``, and an SAE's ``hook_name`` where its path is unchanged.

Usage (PyYAML needed; sae-lens installs it):

    python scripts/build_release_directory.py PATH/TO/sae_lens/pretrained_saes.yaml
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from saecore.converters.release_directory import load_release_index, load_sae_table, write_release_directory
from saecore.converters.saelens_format_names import converter_name

DATA_FOLDER = Path(__file__).resolve().parents[1] / "src" / "saecore" / "data"
SAE_FACTS = ("l0", "variance_explained", "neuronpedia", "norm_scaling_factor")
# The architecture each format's SAEs load as, where the format fixes it (the others read it from their files).
FORMAT_ARCHITECTURES = {
    "gemma_scope": "jumprelu",
    "gemma_3": "jumprelu",
    "llama_scope": "jumprelu",
    "llama_scope_r1_distill": "jumprelu",
    "qwen_scope": "topk",
    "goodfire": "standard",
    "connor_rob_hook_z": "standard",
    "deepseek_r1": "standard",
    "temporal": "temporal",
    "mwhanna_transcoder": "transcoder",
    "gemma_2_transcoder": "jumprelu_transcoder",
    "mntss_clt_layer_transcoder": "transcoder",
}


def architectures_of(conversion: str, paths: list[str]) -> list[str]:
    """The architectures a release's SAEs load as: Gemma Scope 2 keeps transcoders beside SAEs, told by their path."""
    if conversion not in FORMAT_ARCHITECTURES:
        return []
    if conversion != "gemma_3":
        return [FORMAT_ARCHITECTURES[conversion]]
    found = set()
    for path in paths:
        if "transcoder" in path or "clt" in path:
            found.add("jumprelu_skip_transcoder" if "affine" in path else "jumprelu_transcoder")
        else:
            found.add("jumprelu")
    return sorted(found)


def build(saelens_directory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """saecore's directory: SAELens's releases converted, then saecore's own releases."""
    previous = load_release_index()
    releases: dict[str, dict[str, Any]] = {}
    for name, source in saelens_directory.items():
        before = previous.get(name, {})
        hook_names = _hook_names_by_path(name) if before else {}
        saes: dict[str, dict[str, Any]] = {}
        for sae in source["saes"]:
            path = str(sae["path"])
            entry: dict[str, Any] = {"path": path, **{key: sae[key] for key in SAE_FACTS if key in sae}}
            if path in hook_names:
                entry["hook_name"] = hook_names[path]
            saes[str(sae["id"])] = entry
        conversion = converter_name(source.get("conversion_func"))
        release: dict[str, Any] = {"repo_id": source["repo_id"], "model": source["model"], "conversion": conversion}
        architectures = architectures_of(conversion, [entry["path"] for entry in saes.values()])
        if architectures:
            release["architectures"] = architectures
        if source.get("config_overrides"):
            release["config_overrides"] = source["config_overrides"]
        if before.get("config_facts"):
            release["config_facts"] = before["config_facts"]
        if source.get("links"):
            release["links"] = source["links"]
        releases[name] = {**release, "saes": saes}
    for name, release in previous.items():
        if name not in releases:
            fields = {key: value for key, value in release.items() if key != "n_saes"}
            releases[name] = {**fields, "saes": load_sae_table(name)}
    return releases


def _hook_names_by_path(release: str) -> dict[str, str]:
    return {sae["path"]: sae["hook_name"] for sae in load_sae_table(release).values() if "hook_name" in sae}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("saelens_yaml", type=Path, help="SAELens's sae_lens/pretrained_saes.yaml")
    args = parser.parse_args()
    imported = Path(str(resources.files("saecore"))).resolve()
    if imported != DATA_FOLDER.parent:
        parser.error(f"saecore is imported from {imported}, not from this checkout ({DATA_FOLDER.parent}); the "
                     "directory being replaced must be this checkout's: install it editable or set PYTHONPATH=src")
    with args.saelens_yaml.open(encoding="utf-8") as file:
        saelens_directory = yaml.load(file, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    releases = build(saelens_directory)
    write_release_directory(releases, DATA_FOLDER)
    n_saes = sum(len(release["saes"]) for release in releases.values())
    print(f"{DATA_FOLDER}: {len(releases)} releases, {n_saes} SAEs")


if __name__ == "__main__":
    main()
