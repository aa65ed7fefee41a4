"""SAELens's SAE methods on saecore's base classes: hook_z switches, names, classes by architecture."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from fixtures.in_process import ArchitecturePlugin, InProcessReluSAE, InProcessReluSAEConfig
from fixtures.saes import randomized_sae, relu_sae_reference

from saecore import SAE, SAEMetadata, TrainingSAE, get_registry
from saecore.version import SAELENS_VERSION

HOOK_Z = {"model_name": "gpt2", "hook_name": "blocks.1.attn.hook_z"}


def test_get_name_joins_model_hook_and_width() -> None:
    sae = randomized_sae(metadata=HOOK_Z)
    assert sae.get_name() == "sae_gpt2_blocks.1.attn.hook_z_16"


def test_hook_z_reshaping_can_be_turned_on_and_off() -> None:
    sae = randomized_sae(metadata=HOOK_Z)
    heads = torch.randn(5, 2, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert not sae.hook_z_reshaping_mode
    sae.turn_on_forward_pass_hook_z_reshaping()
    assert sae.hook_z_reshaping_mode
    torch.testing.assert_close(sae(heads), relu_sae_reference(sae, heads.flatten(-2)).unflatten(-1, (2, 4)))
    sae.turn_off_forward_pass_hook_z_reshaping()
    assert not sae.hook_z_reshaping_mode
    flat = heads.flatten(-2)
    torch.testing.assert_close(sae(flat), relu_sae_reference(sae, flat))


def test_hook_z_reshaping_is_refused_for_an_sae_on_another_hook() -> None:
    sae = randomized_sae(metadata={"hook_name": "blocks.1.hook_resid_post"})
    with pytest.raises(ValueError, match=r"reads 'blocks\.1\.hook_resid_post'; only an SAE on a hook_z point"):
        sae.turn_on_forward_pass_hook_z_reshaping()
    assert not sae.reshape_hook_z


def test_classes_by_architecture_come_from_the_registry(add_plugin: Callable[[Any, str], None]) -> None:
    add_plugin(ArchitecturePlugin(("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)), "mine")
    assert SAE.get_sae_class_for_architecture("inproc_relu") is InProcessReluSAE
    assert SAE.get_sae_config_class_for_architecture("inproc_relu") is InProcessReluSAEConfig
    recipe = get_registry().training_recipe("standard")
    assert TrainingSAE.get_sae_class_for_architecture("standard") is recipe.training_sae_class
    assert TrainingSAE.get_sae_config_class_for_architecture("standard") is recipe.training_config_class
    standard = get_registry().architecture("standard").sae_class
    with pytest.raises(ValueError, match="'inproc_relu' is a InProcessReluSAE, not a StandardSAE"):
        standard.get_sae_class_for_architecture("inproc_relu")


def test_log_histograms_gives_the_decoder_row_norms() -> None:
    sae = TrainingSAE.from_dict({"architecture": "standard", "d_in": 8, "d_sae": 16})
    histograms = sae.log_histograms()
    assert list(histograms) == ["weights/W_dec_norms", "weights/b_e"]
    np.testing.assert_allclose(histograms["weights/W_dec_norms"], sae.W_dec.detach().norm(dim=1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(histograms["weights/b_e"], sae.b_enc.detach().numpy())


def test_metadata_from_dict_and_values() -> None:
    metadata = SAEMetadata.from_dict({"model_name": "gpt2", "context_size": 64})
    assert metadata == SAEMetadata(model_name="gpt2", context_size=64)
    # As in SAELens, whose metadata always starts with its two version fields.
    assert list(metadata.values()) == [SAELENS_VERSION, SAELENS_VERSION, "gpt2", 64]


def test_training_config_methods_under_saelens_names() -> None:
    cfg = TrainingSAE.from_dict({"architecture": "standard", "d_in": 8, "d_sae": 16, "l1_coefficient": 2.0}).cfg
    assert cfg.get_inference_config_class() is get_registry().architecture("standard").config_class
    assert cfg.get_training_architecture_details() == cfg.training_architecture_details()
    assert cfg.get_training_architecture_details()["l1_coefficient"] == 2.0
    assert cfg.get_inference_sae_cfg_dict() == cfg.to_inference_dict()
    assert cfg.get_inference_sae_cfg_dict()["architecture"] == "standard"
    assert "training_architecture" not in cfg.metadata
    cfg.add_training_info_to_metadata()
    assert cfg.metadata.training_architecture == "standard"
    assert cfg.metadata.training_architecture_details == cfg.training_architecture_details()
