"""The ``temporal`` converter on folders written offline in the published layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import save_file
from temporal_files import write_published_folder
from temporal_reference import random_params, reference

from saecore import SAE
from saecore.errors import SAEFileError

SIZES = {"d_in": 8, "exp_factor": 4, "n_heads": 2, "bottleneck_factor": 4, "n_attn_layers": 1, "kval_topk": 5}


def sae_cfg(tied: bool) -> dict[str, Any]:
    return {"d_in": 8, "d_sae": 32, "n_heads": 2, "bottleneck_factor": 4, "n_attn_layers": 1, "kval_topk": 5,
            "tied_weights": tied, "normalize_activations": "constant_scalar_rescale",
            "activation_normalization_factor": 0.5}


@pytest.mark.parametrize("tied", [True, False])
def test_published_folder_loads_with_its_options(tmp_path: Path, tied: bool) -> None:
    cfg = sae_cfg(tied)
    params = {name: t.float().double() for name, t in random_params(cfg, seed=1).items()}
    folder = write_published_folder(tmp_path, params, scaling_factor=0.5, **SIZES)

    sae = SAE.load_from_disk(folder, converter="temporal", dtype="float64")

    assert type(sae).__name__ == "TemporalSAE"
    assert sae.cfg.d_sae == 32 and sae.cfg.tied_weights is tied and sae.cfg.kval_topk == 5
    assert sae.cfg.normalize_activations == "constant_scalar_rescale"
    assert sae.cfg.activation_normalization_factor == 0.5
    assert sae.cfg.metadata.hook_name == "blocks.12.hook_resid_post"
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z_novel, _, _, full = reference(cfg, params, x)
    with torch.no_grad():
        torch.testing.assert_close(sae.encode(x), z_novel, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae(x), full, rtol=1e-10, atol=1e-12)


def test_dtype_comes_from_the_config(tmp_path: Path) -> None:
    cfg = sae_cfg(True)
    folder = write_published_folder(tmp_path, random_params(cfg, seed=2), scaling_factor=1.0, dtype="bfloat16",
                                    **SIZES)
    sae = SAE.load_from_disk(folder, converter="temporal")
    assert sae.cfg.dtype == "bfloat16" and sae.W_dec.dtype == torch.bfloat16


def test_a_folder_without_a_layer_leaves_the_hook_unset(tmp_path: Path) -> None:
    folder = write_published_folder(tmp_path, random_params(sae_cfg(True), seed=3), scaling_factor=1.0, **SIZES)
    moved = folder.rename(tmp_path / "my_sae")
    assert SAE.load_from_disk(moved, converter="temporal").cfg.metadata.hook_name is None


def test_missing_config_keys_are_named(tmp_path: Path) -> None:
    folder = write_published_folder(tmp_path, random_params(sae_cfg(True), seed=4), scaling_factor=1.0, **SIZES)
    conf = yaml.safe_load((folder / "conf.yaml").read_text())
    del conf["sae"]["scaling_factor"], conf["llm"]
    (folder / "conf.yaml").write_text(yaml.safe_dump(conf))
    with pytest.raises(SAEFileError, match=r"conf.yaml: missing key\(s\) \['llm.dimin'\]"):
        SAE.load_from_disk(folder, converter="temporal")
    conf["llm"] = {"dimin": 8}
    (folder / "conf.yaml").write_text(yaml.safe_dump(conf))
    with pytest.raises(SAEFileError, match=r"missing key\(s\) \['sae.scaling_factor'\]"):
        SAE.load_from_disk(folder, converter="temporal")


def test_missing_files_and_tensors_are_named(tmp_path: Path) -> None:
    folder = write_published_folder(tmp_path, random_params(sae_cfg(True), seed=5), scaling_factor=1.0, **SIZES)
    (folder / "latest_ckpt.safetensors").rename(folder / "other.safetensors")
    with pytest.raises(SAEFileError, match=r"latest_ckpt\.safetensors: no such file"):
        SAE.load_from_disk(folder, converter="temporal")
    save_file({"D": torch.zeros(32, 8)}, str(folder / "latest_ckpt.safetensors"))
    with pytest.raises(SAEFileError, match=r"missing tensor\(s\) \['b'\] of the temporal format"):
        SAE.load_from_disk(folder, converter="temporal")
