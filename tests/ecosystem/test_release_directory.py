"""The release directory shipped with the core, and releases plugins contribute through the hook."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import pytest
from fixtures.in_process import ReleasePlugin

from saecore import DuplicateNameError, UnknownNameError, get_registry
from saecore.converters.release_directory import (
    DIRECTORY_RESOURCE,
    SAE_TABLES_RESOURCE,
    SAETable,
    load_release_index,
    load_sae_table,
)
from saecore.plugin_manager import ENV_ONLY
from saecore.releases import find_releases, resolve_release

AddPlugin = Callable[[Any, str], None]
RELEASE_KEYS = {"repo_id", "model", "conversion", "n_saes", "architectures", "config_overrides", "config_facts",
                "links"}
SAE_KEYS = {"path", "l0", "variance_explained", "neuronpedia", "norm_scaling_factor", "hook_name"}
NUMERIC_SAE_KEYS = ("l0", "variance_explained", "norm_scaling_factor")
# saecore's names for the formats of SAELens 6.54's directory, and sparsify for saecore's own release.
FORMATS = {"sae_lens", "gemma_scope", "gemma_3", "dictionary_learning", "qwen_scope", "llama_scope",
           "llama_scope_r1_distill", "goodfire", "connor_rob_hook_z", "deepseek_r1", "temporal", "mwhanna_transcoder",
           "gemma_2_transcoder", "mntss_clt_layer_transcoder", "sparsify"}


def test_the_directory_ships_inside_the_package_and_its_index_stays_small() -> None:
    resource = resources.files("saecore").joinpath(DIRECTORY_RESOURCE)
    assert resource.is_file()
    assert len(resource.read_bytes()) < 300_000
    tables = resources.files("saecore").joinpath(SAE_TABLES_RESOURCE)
    assert {table.name for table in tables.iterdir()} == {f"{name}.json" for name in load_release_index()}


def test_every_release_is_complete_and_names_a_known_format() -> None:
    for name, release in load_release_index().items():
        assert set(release) <= RELEASE_KEYS, name
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", release["repo_id"]), name
        assert isinstance(release["model"], str) and release["model"], name
        assert release["conversion"] in FORMATS, name
        saes = load_sae_table(name)
        assert saes and len(saes) == release["n_saes"], name
        for sae_id, sae in saes.items():
            assert set(sae) <= SAE_KEYS, (name, sae_id)
            assert isinstance(sae["path"], str) and sae["path"], (name, sae_id)
            for key in NUMERIC_SAE_KEYS:
                assert isinstance(sae.get(key, 0.0), (int, float)), (name, sae_id, key)
            for key in ("neuronpedia", "hook_name"):
                assert isinstance(sae.get(key, ""), str), (name, sae_id, key)


def test_the_directory_covers_every_format_and_the_well_known_releases() -> None:
    directory = load_release_index()
    assert {release["conversion"] for release in directory.values()} == FORMATS
    assert directory["gpt2-small-res-jb"]["repo_id"] == "jbloom/GPT2-Small-SAEs-Reformatted"
    assert directory["gemma-scope-2b-pt-res"]["repo_id"] == "google/gemma-scope-2b-pt-res"
    assert directory["sae-llama-3-8b-32x"]["repo_id"] == "EleutherAI/sae-llama-3-8b-32x"
    assert sum(release["n_saes"] for release in directory.values()) > 13_857


def test_the_core_registers_the_directory_through_the_release_hook() -> None:
    entry = get_registry().releases["gpt2-small-res-jb"]
    assert entry.provider.name == "builtin_converters"
    assert get_registry().registrations_of("builtin_converters")["releases"] == sorted(load_release_index())


def test_the_directory_is_registered_even_when_plugins_are_restricted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ONLY, "sae_standard")
    assert "gemma-scope-2b-pt-res" in get_registry().releases


def test_a_release_resolves_to_its_repo_folder_converter_and_metadata() -> None:
    target = resolve_release("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    assert (target.repo_id, target.folder, target.conversion) == (
        "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre", "sae_lens")
    assert target.config_overrides == {"model_from_pretrained_kwargs": {"center_writing_weights": True},
                                       "neuronpedia_id": "gpt2-small/8-res-jb"}
    assert target.norm_scaling_factor is None


def test_gemma_scope_canonical_ids_point_at_a_width_and_l0_folder() -> None:
    target = resolve_release("gemma-scope-2b-pt-res-canonical", "layer_3/width_16k/canonical")
    assert (target.repo_id, target.folder, target.conversion) == (
        "google/gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_59", "gemma_scope")
    assert target.config_overrides["hook_name"] == "blocks.3.hook_resid_post"
    assert target.config_overrides["model_name"] == "gemma-2-2b"


def test_a_declared_norm_scaling_factor_is_part_of_the_target() -> None:
    target = resolve_release("gpt2-small-mlp-tm", "blocks.0.hook_mlp_out")
    assert target.norm_scaling_factor == pytest.approx(1.049317316132615)


def test_a_misspelt_directory_release_suggests_the_real_one() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean: gpt2-small-res-jb"):
        resolve_release("gpt2-small-res-jbb", "blocks.8.hook_resid_pre")


def test_a_misspelt_sae_id_suggests_close_ids() -> None:
    with pytest.raises(UnknownNameError) as caught:
        resolve_release("gpt2-small-res-jb", "blocks.8.hook_resid_post")
    message = str(caught.value)
    assert message.startswith("sae_id 'blocks.8.hook_resid_post' is not in release 'gpt2-small-res-jb'; did you mean ")
    assert "blocks.8.hook_resid_pre" in message


def test_a_plugin_contributes_a_release_through_the_hook(add_plugin: AddPlugin) -> None:
    saes = {"layer_1": {"path": "l1", "l0": 12.5, "hook_name": "blocks.1.hook_resid_post"}}
    add_plugin(ReleasePlugin("my-lab-gpt2-res", "my-lab/gpt2-saes", saes, model="gpt2", conversion="sparsify",
                             config_overrides={"dataset_path": "my-lab/tokens"}), "my_lab_releases")
    assert [entry.name for entry in find_releases("my-lab")] == ["my-lab-gpt2-res"]
    target = resolve_release("my-lab-gpt2-res", "layer_1")
    assert (target.repo_id, target.folder, target.conversion) == ("my-lab/gpt2-saes", "l1", "sparsify")
    assert target.config_overrides == {"dataset_path": "my-lab/tokens", "hook_name": "blocks.1.hook_resid_post"}


def test_a_plugin_reusing_a_directory_release_name_is_an_error_naming_both(add_plugin: AddPlugin) -> None:
    add_plugin(ReleasePlugin("gpt2-small-res-jb", "someone/else", {"x": {"path": "x"}}), "copycat")
    with pytest.raises(DuplicateNameError, match=r"release 'gpt2-small-res-jb' is registered twice: by .*"
                                                 r"builtin_converters.* and by in-process plugin 'copycat'"):
        get_registry()


def test_a_repo_id_of_a_directory_release_warns_and_uses_that_releases_format() -> None:
    with pytest.warns(UserWarning, match=r"'google/gemma-scope-2b-pt-res' is a Hugging Face repo id; the release "
                                         r"directory lists this repo as gemma-scope-2b-pt-res, "
                                         r"gemma-scope-2b-pt-res-canonical\. .*SAE\.from_pretrained\("
                                         r"'gemma-scope-2b-pt-res', '<sae_id>'\)"):
        target = resolve_release("google/gemma-scope-2b-pt-res", "layer_99/width_1k/average_l0_1")
    assert (target.folder, target.conversion) == ("layer_99/width_1k/average_l0_1", "gemma_scope")


def test_a_repo_id_and_a_listed_folder_resolve_as_that_release_entry() -> None:
    with pytest.warns(UserWarning, match=r"SAE\.from_pretrained\('gpt2-small-res-jb', 'blocks\.8\.hook_resid_pre'\)"):
        target = resolve_release("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre")
    assert target.config_overrides["neuronpedia_id"] == "gpt2-small/8-res-jb"


def test_find_releases_matches_names_repos_and_models_or_a_glob() -> None:
    assert {e.name for e in find_releases("EleutherAI/SAE-LLAMA")} == {"sae-llama-3-8b-32x"}
    assert {e.name for e in find_releases("gemma-scope-2b-*-canonical")} == {
        "gemma-scope-2b-pt-res-canonical", "gemma-scope-2b-pt-mlp-canonical", "gemma-scope-2b-pt-att-canonical"}
    assert "pythia-70m-deduped-res-sm" in {e.name for e in find_releases("pythia-70m")}
    assert find_releases("no-such-release-anywhere") == []
    names = [entry.name for entry in find_releases()]
    assert names == sorted(names) and len(names) == len(load_release_index())


def test_building_the_registry_reads_no_sae_table_until_one_is_asked_for() -> None:
    load_sae_table.cache_clear()
    entry = get_registry().releases["gemma-scope-2b-pt-res-canonical"]
    assert isinstance(entry.saes, SAETable) and len(entry.saes) == 58
    assert load_sae_table.cache_info().currsize == 0
    resolve_release("gemma-scope-2b-pt-res-canonical", "layer_3/width_16k/canonical")
    assert load_sae_table.cache_info().currsize == 1
