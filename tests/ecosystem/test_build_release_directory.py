"""``scripts/build_release_directory.py``: SAELens's directory in, saecore's directory out."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_release_directory.py"


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_release_directory", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAELENS_DIRECTORY: dict[str, Any] = {
    "gemma-scope-2b-pt-res-canonical": {
        "conversion_func": "gemma_2", "model": "gemma-2-2b", "repo_id": "google/gemma-scope-2b-pt-res",
        "saes": [{"id": "layer_3/width_16k/canonical", "path": "layer_3/width_16k/average_l0_59",
                  "neuronpedia": "gemma-2-2b/3-gemmascope-res-16k"},
                 {"id": "layer_4/width_16k/canonical", "path": "layer_4/width_16k/average_l0_1"}],
    },
    "gpt2-small-res-jb": {
        "conversion_func": None, "model": "gpt2-small", "repo_id": "jbloom/GPT2-Small-SAEs-Reformatted",
        "config_overrides": {"model_from_pretrained_kwargs": {"center_writing_weights": True}},
        "links": {"model": "https://huggingface.co/gpt2"},
        "saes": [{"id": "blocks.0.hook_resid_pre", "path": 7, "l0": 13, "variance_explained": 0.99,
                  "norm_scaling_factor": 1.5}],
    },
    "gemma-scope-2-1b-pt-transcoders": {
        "conversion_func": "gemma_3", "model": "google/gemma-3-1b-pt", "repo_id": "google/gemma-scope-2-1b-pt",
        "saes": [{"id": "a", "path": "transcoder/layer_0_width_16k_l0_big"},
                 {"id": "b", "path": "transcoder/layer_0_width_16k_l0_big_affine"},
                 {"id": "c", "path": "resid_post/layer_0_width_16k_l0_big"}],
    },
}


def test_saelens_releases_keep_every_fact_and_name_saecore_converters(script: ModuleType) -> None:
    built = script.build(SAELENS_DIRECTORY)
    gpt2 = built["gpt2-small-res-jb"]
    assert (gpt2["repo_id"], gpt2["model"], gpt2["conversion"]) == (
        "jbloom/GPT2-Small-SAEs-Reformatted", "gpt2-small", "sae_lens")
    assert gpt2["config_overrides"] == {"model_from_pretrained_kwargs": {"center_writing_weights": True}}
    assert gpt2["links"] == {"model": "https://huggingface.co/gpt2"}
    assert "architectures" not in gpt2
    assert gpt2["saes"] == {"blocks.0.hook_resid_pre": {"path": "7", "l0": 13, "variance_explained": 0.99,
                                                        "norm_scaling_factor": 1.5}}
    assert built["gemma-scope-2-1b-pt-transcoders"]["architectures"] == [
        "jumprelu", "jumprelu_skip_transcoder", "jumprelu_transcoder"]


def test_what_saecore_knows_beyond_saelens_is_kept(script: ModuleType) -> None:
    built = script.build(SAELENS_DIRECTORY)
    gemma = built["gemma-scope-2b-pt-res-canonical"]
    assert (gemma["conversion"], gemma["architectures"]) == ("gemma_scope", ["jumprelu"])
    assert gemma["config_facts"]["model_name"] == "gemma-2-2b"
    assert "config_overrides" not in gemma
    assert gemma["saes"]["layer_3/width_16k/canonical"] == {
        "path": "layer_3/width_16k/average_l0_59", "neuronpedia": "gemma-2-2b/3-gemmascope-res-16k",
        "hook_name": "blocks.3.hook_resid_post"}
    assert "hook_name" not in gemma["saes"]["layer_4/width_16k/canonical"], "its path changed"
    assert built["sae-llama-3-8b-32x"]["conversion"] == "sparsify"
    assert list(built)[:3] == list(SAELENS_DIRECTORY)


def test_the_written_directory_is_an_index_and_one_table_per_release(script: ModuleType, tmp_path: Path) -> None:
    built = script.build(SAELENS_DIRECTORY)
    (tmp_path / "pretrained_releases").mkdir()
    (tmp_path / "pretrained_releases" / "dropped-release.json").write_text("{}")
    script.write_release_directory(built, tmp_path)
    index = json.loads((tmp_path / "pretrained_releases.json").read_text())
    assert index["format_version"] == 2 and list(index["releases"]) == list(built)
    assert index["releases"]["gpt2-small-res-jb"]["n_saes"] == 1
    tables = sorted(path.stem for path in (tmp_path / "pretrained_releases").iterdir())
    assert tables == sorted(built)
    table = json.loads((tmp_path / "pretrained_releases" / "gpt2-small-res-jb.json").read_text())
    assert table == built["gpt2-small-res-jb"]["saes"]


def test_a_release_name_that_cannot_be_a_file_name_is_refused(script: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"release name '\.\./escape' must match"):
        script.write_release_directory({"../escape": {"repo_id": "a/b", "saes": {}}}, tmp_path)
