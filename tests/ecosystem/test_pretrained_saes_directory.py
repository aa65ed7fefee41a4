"""SAELens's pretrained-directory functions over saecore's registry: the shipped directory and plugins' releases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fixtures.in_process import ReleasePlugin

import saecore
from saecore.loading import pretrained_saes_directory as directory

AddPlugin = Callable[[Any, str], None]
NAMES = ("PretrainedSAELookup", "get_config_overrides", "get_norm_scaling_factor", "get_pretrained_saes_directory",
         "get_releases_for_repo_id", "get_repo_id_and_folder_name")


def test_the_names_are_importable_from_saecore_and_from_the_saelens_module_path() -> None:
    for name in NAMES:
        assert getattr(saecore, name) is getattr(directory, name)
        assert name in dir(saecore)


def test_a_release_reads_as_saelens_describes_it() -> None:
    lookup = directory.get_pretrained_saes_directory()["gemma-scope-2b-pt-res-canonical"]
    assert (lookup.repo_id, lookup.model, lookup.conversion_func) == ("google/gemma-scope-2b-pt-res", "gemma-2-2b",
                                                                      "gemma_2")
    assert lookup.saes_map["layer_3/width_16k/canonical"] == "layer_3/width_16k/average_l0_59"
    assert lookup.neuronpedia_id["layer_3/width_16k/canonical"] == "gemma-2-2b/3-gemmascope-res-16k"
    assert lookup.expected_l0["layer_3/width_16k/canonical"] == 0.0
    assert lookup.expected_var_explained["layer_3/width_16k/canonical"] == 1.0
    assert lookup.config_overrides is None
    assert directory.get_pretrained_saes_directory()["gpt2-small-res-jb"].conversion_func is None


def test_the_functions_answer_for_a_directory_release() -> None:
    assert directory.get_repo_id_and_folder_name("gpt2-small-mlp-tm", "blocks.0.hook_mlp_out") == (
        "tommmcgrath/gpt2-small-mlp-out-saes", "sae_group_gpt2_blocks.0.hook_mlp_out_24576:v1")
    assert directory.get_norm_scaling_factor("gpt2-small-mlp-tm", "blocks.0.hook_mlp_out") == pytest.approx(
        1.049317316132615)
    assert directory.get_norm_scaling_factor("gpt2-small-res-jb", "blocks.8.hook_resid_pre") is None
    assert directory.get_config_overrides("gpt2-small-res-jb", "blocks.8.hook_resid_pre") == {
        "model_from_pretrained_kwargs": {"center_writing_weights": True}, "neuronpedia_id": "gpt2-small/8-res-jb"}
    assert directory.get_releases_for_repo_id("google/gemma-scope-2b-pt-res") == [
        "gemma-scope-2b-pt-res", "gemma-scope-2b-pt-res-canonical"]


def test_an_unknown_release_is_a_repo_id_and_an_unknown_sae_id_a_value_error_with_close_ids() -> None:
    assert directory.get_repo_id_and_folder_name("someone/repo", "folder") == ("someone/repo", "folder")
    assert directory.get_config_overrides("someone/repo", "folder") == {}
    assert directory.get_norm_scaling_factor("someone/repo", "folder") is None
    with pytest.raises(ValueError, match=r"SAE ID 'blocks.8.hook_resid_post' not found in release "
                                         r"'gpt2-small-res-jb'; did you mean .*'blocks.8.hook_resid_pre'"):
        directory.get_repo_id_and_folder_name("gpt2-small-res-jb", "blocks.8.hook_resid_post")


def test_a_plugins_release_is_in_the_directory_view(add_plugin: AddPlugin) -> None:
    saes = {"layer_1": {"path": "l1", "l0": 12.5, "neuronpedia": "gpt2/1-lab"}}
    add_plugin(ReleasePlugin("my-lab-gpt2-res", "my-lab/gpt2-saes", saes, model="gpt2",
                             conversion="dictionary_learning"), "my_lab_releases")
    lookup = directory.get_pretrained_saes_directory()["my-lab-gpt2-res"]
    assert (lookup.conversion_func, lookup.saes_map, lookup.expected_l0) == (
        "dictionary_learning_1", {"layer_1": "l1"}, {"layer_1": 12.5})
    assert directory.get_config_overrides("my-lab-gpt2-res", "layer_1") == {"neuronpedia_id": "gpt2/1-lab"}
    assert directory.get_releases_for_repo_id("my-lab/gpt2-saes") == ["my-lab-gpt2-res"]
