"""SAELens's piecewise readers of its folder format (``sae_lens.loading.pretrained_sae_loaders``) against saecore's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

sae_lens = pytest.importorskip("sae_lens")

from fixtures.hub_cache import add_repo_snapshot, offline_hub_cache  # noqa: E402
from sae_lens.loading import pretrained_sae_loaders as saelens_loaders  # noqa: E402
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory  # noqa: E402

from saecore.errors import SAEFileError  # noqa: E402
from saecore.loading import pretrained_sae_loaders as loaders  # noqa: E402

CFG = {"d_in": 4, "d_sae": 8, "dtype": "float32", "device": "cpu", "architecture": "standard",
       "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
       "metadata": {"model_name": "gpt2", "hook_name": "blocks.0.hook_resid_pre", "sae_lens_version": "6.5.0"}}
PRE_6_CFG = {"d_in": 4, "d_sae": 8, "dtype": "float32", "device": "cpu", "hook_point": "blocks.0.attn.hook_z",
             "hook_point_layer": 0, "model_name": "gpt2", "activation_fn_str": "topk",
             "activation_fn_kwargs": {"k": 2}, "normalize_activations": True, "context_size": 128,
             "prepend_bos": False, "sae_lens_training_version": "3.0"}


def write_folder(folder: Path, scaling_factor: float | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps(CFG))
    tensors = {"W_enc": torch.randn(4, 8, dtype=torch.float64), "b_dec": torch.randn(4, dtype=torch.float64)}
    if scaling_factor is not None:
        tensors["scaling_factor"] = torch.full((8,), scaling_factor, dtype=torch.float64)
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    return folder


def test_disk_and_hub_configs_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_folder(tmp_path / "sae")
    overrides = {"d_sae": 16}
    for device, cfg_overrides in ((None, None), ("meta", overrides)):
        assert loaders.get_sae_lens_config_from_disk(
            folder, device, cfg_overrides
        ) == saelens_loaders.get_sae_lens_config_from_disk(folder, device, cfg_overrides)
    cache = offline_hub_cache(tmp_path, monkeypatch)
    add_repo_snapshot(cache, "org/saes", {"layer_0/cfg.json": folder / "cfg.json"})
    expected = saelens_loaders.get_sae_lens_config_from_hf("org/saes", "layer_0", "cpu", False, overrides)
    assert loaders.get_sae_lens_config_from_hf("org/saes", "layer_0", "cpu", False, overrides) == expected


def without_none_metadata(cfg: dict[str, Any]) -> dict[str, Any]:
    return {**cfg, "metadata": {key: value for key, value in cfg["metadata"].items() if value is not None}}


def test_pre_6_configs_upgrade_as_in_saelens() -> None:
    expected = saelens_loaders.handle_pre_6_0_config(dict(PRE_6_CFG))
    assert loaders.handle_pre_6_0_config(dict(PRE_6_CFG)) == without_none_metadata(expected)
    assert loaders.handle_config_defaulting(dict(PRE_6_CFG)) == without_none_metadata(expected)
    assert loaders.handle_config_defaulting(dict(CFG)) == saelens_loaders.handle_config_defaulting(dict(CFG))


@pytest.mark.parametrize("dtype", [None, torch.float32, "float16"])
def test_safetensors_weights_match(tmp_path: Path, dtype: torch.dtype | str | None) -> None:
    weights = write_folder(tmp_path / "sae") / "sae_weights.safetensors"
    ours = loaders.load_safetensors_weights(weights, "cpu", dtype)
    theirs = saelens_loaders.load_safetensors_weights(weights, "cpu", dtype)
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor)
        assert ours[name].dtype == tensor.dtype


@pytest.mark.parametrize("scaling_factor", [None, 1.0])
def test_sae_components_match(tmp_path: Path, scaling_factor: float | None) -> None:
    weights = write_folder(tmp_path / "sae", scaling_factor) / "sae_weights.safetensors"
    ours_cfg, ours = loaders.read_sae_components_from_disk(dict(CFG), weights)
    theirs_cfg, theirs = saelens_loaders.read_sae_components_from_disk(dict(CFG), weights)
    assert ours_cfg == theirs_cfg
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(ours[name], tensor)


def test_a_scaling_factor_other_than_ones_is_refused_naming_the_file(tmp_path: Path) -> None:
    weights = write_folder(tmp_path / "sae", 2.0) / "sae_weights.safetensors"
    with pytest.raises(SAEFileError, match="scaling_factor"):
        loaders.read_sae_components_from_disk({**CFG, "finetuning_scaling_factor": True}, weights)


def test_conversion_loader_names_match_for_every_saelens_release() -> None:
    releases = [*get_pretrained_saes_directory(), "not-a-release"]
    mismatches = {
        release: (loaders.get_conversion_loader_name(release), saelens_loaders.get_conversion_loader_name(release))
        for release in releases
        if loaders.get_conversion_loader_name(release) != saelens_loaders.get_conversion_loader_name(release)
    }
    assert not mismatches
