"""saecore's pretrained directory and its SAELens-named functions against SAELens 6.54's, release by release."""

from __future__ import annotations

import dataclasses
from importlib import resources
from typing import Any

import pytest

import saecore
from saecore.converters.saelens_format_names import converter_name
from saecore.loading import pretrained_saes_directory as ours
from saecore.releases import resolve_release

directory = pytest.importorskip("sae_lens.loading.pretrained_saes_directory")


@pytest.fixture(scope="module")
def saelens_yaml() -> dict[str, Any]:
    """SAELens's directory file as it is written, parsed once for the module."""
    import yaml

    text = resources.files("sae_lens").joinpath("pretrained_saes.yaml").read_text(encoding="utf-8")
    return dict(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def test_no_saelens_release_is_missing_and_none_differs_in_any_field() -> None:
    theirs = directory.get_pretrained_saes_directory()
    mine = ours.get_pretrained_saes_directory()
    missing = sorted(set(theirs) - set(mine))
    mismatched = sorted(name for name in set(theirs) & set(mine)
                        if dataclasses.asdict(mine[name]) != dataclasses.asdict(theirs[name]))
    assert (missing, mismatched) == ([], [])
    assert len(theirs) == 170 and sum(len(lookup.saes_map) for lookup in theirs.values()) == 13_857


def test_every_saelens_sae_resolves_to_the_same_repo_folder_format_and_facts(saelens_yaml: dict[str, Any]) -> None:
    mismatched = []
    for name, release in saelens_yaml.items():
        overrides = release.get("config_overrides") or {}
        for sae in release["saes"]:
            target = resolve_release(name, sae["id"])
            expected = (release["repo_id"], str(sae["path"]), converter_name(release["conversion_func"]),
                        sae.get("norm_scaling_factor"))
            found = (target.repo_id, target.folder, target.conversion, target.norm_scaling_factor)
            applied = {key: target.config_overrides.get(key) for key in overrides}
            neuronpedia = target.config_overrides.get("neuronpedia_id")
            if found != expected or applied != overrides or neuronpedia != sae.get("neuronpedia"):
                mismatched.append((name, sae["id"]))
    assert mismatched == []


def test_models_links_and_per_sae_facts_match_saelens_yaml(saelens_yaml: dict[str, Any]) -> None:
    registry = saecore.get_registry()
    mismatched = []
    for name, release in saelens_yaml.items():
        entry = registry.releases[name]
        if (entry.fields.get("model"), entry.fields.get("links")) != (release["model"], release.get("links")):
            mismatched.append(name)
        for sae in release["saes"]:
            mine = entry.saes[sae["id"]]
            keys = ("l0", "variance_explained", "neuronpedia", "norm_scaling_factor")
            if any(mine.get(key) != sae.get(key) for key in keys):
                mismatched.append((name, sae["id"]))
    assert mismatched == []


def test_the_lookup_class_has_saelens_fields_in_saelens_order() -> None:
    names = [field.name for field in dataclasses.fields(directory.PretrainedSAELookup)]
    assert [field.name for field in dataclasses.fields(ours.PretrainedSAELookup)] == names


def test_the_functions_answer_as_saelens_does_for_every_release() -> None:
    theirs = directory.get_pretrained_saes_directory()
    for name, lookup in theirs.items():
        sae_id = next(iter(lookup.saes_map))
        for function in ("get_repo_id_and_folder_name", "get_norm_scaling_factor", "get_config_overrides"):
            assert getattr(ours, function)(name, sae_id) == getattr(directory, function)(name, sae_id), (
                function, name, sae_id)
        with_factor = next(iter(lookup.norm_scaling_factor), None)
        if with_factor is not None:
            assert ours.get_norm_scaling_factor(name, with_factor) == directory.get_norm_scaling_factor(
                name, with_factor)
    for repo_id in {lookup.repo_id for lookup in theirs.values()}:
        mine = [name for name in ours.get_releases_for_repo_id(repo_id) if name in theirs]
        assert mine == directory.get_releases_for_repo_id(repo_id), repo_id


def test_unknown_names_behave_as_in_saelens() -> None:
    for function in ("get_repo_id_and_folder_name", "get_norm_scaling_factor", "get_config_overrides"):
        assert getattr(ours, function)("someone/repo", "folder") == getattr(directory, function)(
            "someone/repo", "folder")
    assert ours.get_norm_scaling_factor("gpt2-small-res-jb", "nope") == directory.get_norm_scaling_factor(
        "gpt2-small-res-jb", "nope")
    assert ours.get_releases_for_repo_id("someone/repo") == directory.get_releases_for_repo_id("someone/repo") == []
    for module in (ours, directory):
        with pytest.raises(ValueError, match="SAE ID 'nope' not found in release 'gpt2-small-res-jb'"):
            module.get_repo_id_and_folder_name("gpt2-small-res-jb", "nope")
