"""Directory releases load through the real huggingface_hub download code, offline, from a populated cache.

The cache is laid out as huggingface_hub writes it (``fixtures.hub_cache``) and offline
mode is on, as for a user who downloaded before and lost the network. The files placed
there are tiny stand-ins at the exact repo paths the directory names.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ecosystem_helpers import float64_params, jumprelu_reference, relu_reference, require_architectures
from fixtures.hub_cache import add_repo_snapshot
from fixtures.saes import randomized_sae

from saecore import SAE


def publish_folder(hub_cache: Path, repo_id: str, path_in_repo: str, local: Path) -> None:
    add_repo_snapshot(hub_cache, repo_id, {f"{path_in_repo}/{f.name}": f for f in local.iterdir()})


def publish_saelens(hub_cache: Path, tmp_path: Path, repo_id: str, path_in_repo: str, **fields: Any) -> SAE[Any]:
    sae = randomized_sae(**fields)
    local = tmp_path / "local" / path_in_repo
    sae.save_model(local)
    publish_folder(hub_cache, repo_id, path_in_repo, local)
    return sae


def publish_gemma_scope(hub_cache: Path, tmp_path: Path, repo_id: str, path_in_repo: str,
                        d_in: int = 8, d_sae: int = 16) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(4)
    arrays = {"W_enc": rng.normal(size=(d_in, d_sae)), "W_dec": rng.normal(size=(d_sae, d_in)),
              "b_enc": rng.normal(size=d_sae), "b_dec": rng.normal(size=d_in),
              "threshold": rng.uniform(0.2, 1.0, size=d_sae)}
    local = tmp_path / "local" / path_in_repo
    local.mkdir(parents=True)
    np.savez(local / "params.npz", **{name: array.astype(np.float32) for name, array in arrays.items()})
    publish_folder(hub_cache, repo_id, path_in_repo, local)
    return {name: torch.from_numpy(array.astype(np.float32)).double() for name, array in arrays.items()}


def x_of(d_in: int) -> torch.Tensor:
    return torch.randn(6, d_in, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def test_saelens_release_loads_offline_with_directory_metadata(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("standard")
    original = publish_saelens(hub_cache, tmp_path, "jbloom/GPT2-Small-SAEs-Reformatted", "blocks.8.hook_resid_pre")
    sae, cfg_dict, sparsity = SAE.from_pretrained_with_cfg_and_sparsity(
        "gpt2-small-res-jb", "blocks.8.hook_resid_pre", dtype="float64")
    x = x_of(8)
    params = float64_params(original)
    expected = relu_reference(params, x, centre=True) @ params["W_dec"] + params["b_dec"]
    torch.testing.assert_close(sae(x), expected, rtol=0, atol=1e-12)
    assert cfg_dict["metadata"]["neuronpedia_id"] == "gpt2-small/8-res-jb"
    assert cfg_dict["metadata"]["model_from_pretrained_kwargs"] == {"center_writing_weights": True}
    assert sparsity is None


def test_directory_norm_scaling_factor_is_folded_offline(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("standard")
    scale = 1.049317316132615
    original = publish_saelens(hub_cache, tmp_path, "tommmcgrath/gpt2-small-mlp-out-saes",
                               "sae_group_gpt2_blocks.0.hook_mlp_out_24576:v1",
                               normalize_activations="expected_average_only_in")
    sae = SAE.from_pretrained("gpt2-small-mlp-tm", "blocks.0.hook_mlp_out", dtype="float64")
    assert sae.cfg.normalize_activations == "none"
    params, x = float64_params(original), x_of(8)
    expected = (relu_reference(params, x * scale, centre=True) @ params["W_dec"] + params["b_dec"]) / scale
    torch.testing.assert_close(sae(x), expected, rtol=0, atol=1e-12)


def test_gemma_scope_release_loads_offline_as_jumprelu(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("jumprelu")
    params = publish_gemma_scope(hub_cache, tmp_path, "google/gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_59")
    sae = SAE.from_pretrained("gemma-scope-2b-pt-res-canonical", "layer_3/width_16k/canonical", dtype="float64")
    metadata = sae.cfg.metadata
    assert (metadata.model_name, metadata.hook_name) == ("gemma-2-2b", "blocks.3.hook_resid_post")
    assert metadata.neuronpedia_id == "gemma-2-2b/3-gemmascope-res-16k"
    assert (metadata.dataset_path, metadata.context_size) == ("monology/pile-uncopyrighted", 1024)
    x = x_of(8)
    acts = jumprelu_reference(params, x, centre=False)
    assert 0 < int((acts > 0).sum()) < acts.numel()
    torch.testing.assert_close(sae.encode(x), acts, rtol=0, atol=1e-12)
    torch.testing.assert_close(sae(x), acts @ params["W_dec"] + params["b_dec"], rtol=0, atol=1e-12)


def test_gemma_scope_attention_release_reshapes_hook_z(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("jumprelu")
    params = publish_gemma_scope(hub_cache, tmp_path, "google/gemma-scope-2b-pt-att",
                                 "layer_0/width_16k/average_l0_104")
    sae = SAE.from_pretrained("gemma-scope-2b-pt-att-canonical", "layer_0/width_16k/canonical", dtype="float64")
    assert sae.cfg.reshape_activations == "hook_z"
    assert sae.cfg.metadata.hook_name == "blocks.0.attn.hook_z"
    z = x_of(8).reshape(6, 2, 4)
    expected = jumprelu_reference(params, z.flatten(-2), centre=False) @ params["W_dec"] + params["b_dec"]
    torch.testing.assert_close(sae(z), expected.reshape(6, 2, 4), rtol=0, atol=1e-12)


def test_repo_id_of_a_directory_release_loads_offline_with_a_warning(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("jumprelu")
    publish_gemma_scope(hub_cache, tmp_path, "google/gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_59")
    with pytest.warns(UserWarning, match=r"use SAE\.from_pretrained\('gemma-scope-2b-pt-res', "
                                         r"'layer_3/width_16k/average_l0_59'\)") as record:
        sae = SAE.from_pretrained("google/gemma-scope-2b-pt-res", "layer_3/width_16k/average_l0_59")
    assert record[0].filename == __file__
    assert sae.cfg.architecture() == "jumprelu"
    assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post"


def test_repo_id_outside_the_directory_loads_without_a_warning(hub_cache: Path, tmp_path: Path) -> None:
    require_architectures("standard")
    publish_saelens(hub_cache, tmp_path, "someone/unlisted-saes", "layer_1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sae = SAE.from_pretrained("someone/unlisted-saes", "layer_1")
    assert sae.cfg.architecture() == "standard"
