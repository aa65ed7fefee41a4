"""Folders in the layouts SAELens wrote before 6.0 load in saecore as SAELens 6 loads them.

SAELens 6 upgrades such a cfg.json in ``handle_pre_6_0_config``
(sae_lens/loading/pretrained_sae_loaders.py): it renames ``hook_point`` and
``activation_fn_str``, turns ``activation_fn_kwargs.k`` into the topk architecture, maps a
boolean ``normalize_activations``, moves LLM facts into metadata, and
``read_sae_components_from_disk`` drops an all-ones ``scaling_factor`` tensor. A JumpReLU
checkpoint storing ``log_threshold`` is read by ``JumpReLUTrainingSAE`` via exp.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from saelens_compat_support import (
    D_IN,
    D_SAE,
    Case,
    assert_same_outputs,
    build_saelens_sae,
    json_normal,
    parameters_of,
)
from safetensors.torch import save_file

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

VERSION_KEYS = ("sae_lens_version", "sae_lens_training_version")


def _llm_fields(**extra: Any) -> dict[str, Any]:
    """Fields every old cfg.json had; ``extra`` adds the hook key of its era and the rest."""
    return {
        "model_name": "gpt2-small",
        "context_size": 128,
        "dataset_path": "Skylion007/openwebtext",
        "prepend_bos": True,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        **extra,
    }


# case id -> (architecture the file holds, cfg.json written in an old layout)
PRE_V6_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "v2-no-architecture-key": ("standard", _llm_fields(
        hook_point="blocks.2.hook_resid_pre", hook_point_layer=2, hook_point_head_index=None, activation_fn_str="relu",
        normalize_activations=False, finetuning_scaling_factor=False, sae_lens_training_version="2.1.3",
        l1_coefficient=8e-5, lr=4e-4)),
    "v3-normalize-true-no-b-dec-in": ("standard", _llm_fields(
        hook_point="blocks.5.hook_resid_post", architecture="standard", activation_fn_str="relu",
        normalize_activations=True, apply_b_dec_to_input=False, sae_lens_training_version="3.13.0")),
    "v4-topk-via-activation-kwargs": ("topk", _llm_fields(
        hook_point="blocks.4.hook_resid_post", architecture="standard", activation_fn_str="topk",
        activation_fn_kwargs={"k": 5}, normalize_activations="none", sae_lens_training_version="4.4.1")),
    "v4-hook-z": ("standard", _llm_fields(
        hook_point="blocks.1.attn.hook_z", architecture="standard", activation_fn_str="relu",
        normalize_activations="none", sae_lens_training_version="4.1.0")),
    "v5-gated-layer-norm": ("gated", _llm_fields(
        hook_name="blocks.6.hook_mlp_out", hook_layer=6, hook_head_index=None, architecture="gated",
        activation_fn_str="relu", normalize_activations="layer_norm", sae_lens_training_version="5.5.0")),
    "v5-jumprelu-explicit-version": ("jumprelu", _llm_fields(
        hook_name="blocks.12.hook_resid_post", hook_layer=12, architecture="jumprelu",
        activation_fn_str="relu", apply_b_dec_to_input=False, normalize_activations=None,
        neuronpedia_id="gemma-2-2b/12-res-16k", model_from_pretrained_kwargs={}, sae_lens_version="5.9.1")),
    "v5-topk-constant-norm": ("topk", _llm_fields(
        hook_name="blocks.0.hook_resid_pre", architecture="topk", activation_fn_str="topk",
        activation_fn_kwargs={"k": 9}, normalize_activations="constant_norm_rescale",
        sae_lens_training_version="5.2.0")),
}


def _write_folder(folder: Path, cfg: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({name: t.detach().contiguous() for name, t in tensors.items()}, str(folder / "sae_weights.safetensors"))


def _random_tensors(architecture: str) -> dict[str, torch.Tensor]:
    options = {"k": 5} if architecture == "topk" else {}
    return {name: t.clone() for name, t in build_saelens_sae(Case(architecture, options)).state_dict().items()}


def _assert_loads_like_saelens(loaded: Any, expected: Any, file_cfg: dict[str, Any]) -> None:
    """Same architecture, cfg fields, LLM metadata and outputs as SAELens's reading."""
    expected_cfg = json_normal(expected.cfg.to_dict())
    loaded_cfg = json_normal(loaded.cfg.to_dict())
    assert loaded.cfg.architecture() == expected.cfg.architecture()
    for key, value in expected_cfg.items():
        if key not in ("metadata", "device"):
            found = loaded_cfg.get(key)
            assert found == value, f"cfg field {key!r}: saecore {found!r}, SAELens {value!r}"
    loaded_metadata = loaded_cfg["metadata"]
    for key, value in expected_cfg["metadata"].items():
        if key in VERSION_KEYS and key not in file_cfg:
            continue  # SAELens stamps its own version (or None) on files that never had one
        found = loaded_metadata.get(key)
        assert found == value, f"metadata {key!r}: saecore {found!r}, SAELens {value!r}"
    case = Case(expected_cfg["architecture"], {"reshape_activations": expected_cfg["reshape_activations"]})
    assert_same_outputs(loaded, expected, case, expected_cfg, parameters_of(expected))


@pytest.mark.parametrize("config_id", PRE_V6_CONFIGS)
def test_pre_v6_folder_loads_like_saelens(config_id: str, tmp_path: Path) -> None:
    architecture, cfg = PRE_V6_CONFIGS[config_id]
    _write_folder(tmp_path, cfg, _random_tensors(architecture))

    expected = sae_lens.SAE.load_from_disk(tmp_path)
    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert expected.cfg.architecture() == architecture
    _assert_loads_like_saelens(loaded, expected, cfg)


def test_pre_v6_all_ones_scaling_factor_is_dropped(tmp_path: Path) -> None:
    """Files from SAELens 3-5 often carry ``scaling_factor`` of ones, a finetuning leftover."""
    _, cfg = PRE_V6_CONFIGS["v3-normalize-true-no-b-dec-in"]
    tensors = {**_random_tensors("standard"), "scaling_factor": torch.ones(D_SAE)}
    _write_folder(tmp_path, {**cfg, "finetuning_scaling_factor": False}, tensors)

    expected = sae_lens.SAE.load_from_disk(tmp_path)
    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert "scaling_factor" not in dict(loaded.named_parameters())
    _assert_loads_like_saelens(loaded, expected, cfg)


@pytest.mark.parametrize("layout", ["v6", "pre-v6"])
def test_jumprelu_log_threshold_loads_like_saelens_training_sae(layout: str, tmp_path: Path) -> None:
    """SAELens's inference JumpReLUSAE rejects ``log_threshold`` (it has no
    process_state_dict_for_loading); JumpReLUTrainingSAE.load_from_disk converts it with exp
    (sae_lens/saes/jumprelu_sae.py, JumpReLUTrainingSAE.process_state_dict_for_loading)."""
    tensors = _random_tensors("jumprelu")
    tensors["log_threshold"] = tensors.pop("threshold").log()
    if layout == "v6":
        sae_lens_sae = build_saelens_sae(Case("jumprelu", {"apply_b_dec_to_input": False}))
        cfg = sae_lens_sae.cfg.to_dict()
        cfg["metadata"] = json_normal(cfg["metadata"])
    else:
        cfg = PRE_V6_CONFIGS["v5-jumprelu-explicit-version"][1]
    _write_folder(tmp_path, cfg, tensors)

    expected = sae_lens.JumpReLUTrainingSAE.load_from_disk(tmp_path)
    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert torch.allclose(loaded.threshold.double(), tensors["log_threshold"].double().exp(), rtol=1e-6)
    case = Case("jumprelu", {"reshape_activations": "none"})
    expected_cfg = json_normal(expected.cfg.get_inference_sae_cfg_dict())
    assert_same_outputs(loaded, expected, case, expected_cfg, parameters_of(expected))
