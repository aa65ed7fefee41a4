"""The inference SAE a training run writes (``save_inference_model``) crosses over both ways.

This is the file users actually ship: the training config reduced to inference fields,
training facts moved to metadata, and training-only transforms folded into the weights
(TopK's decoder-norm rescaling, BatchTopK's batch threshold turned into a JumpReLU one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from saelens_compat_support import (
    D_IN,
    D_SAE,
    METADATA,
    Case,
    assert_cfg_carries_file,
    assert_close,
    assert_same_outputs,
    make_inputs,
    parameters_of,
    randomize_parameters,
    read_cfg_json,
    saelens_metadata,
)

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

# recipe id -> (SAELens training class, its config class, recipe options, inference architecture)
SAELENS_RECIPES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "standard": ("StandardTrainingSAE", "StandardTrainingSAEConfig", {"l1_coefficient": 5.0, "lp_norm": 2.0},
                 "standard"),
    "gated": ("GatedTrainingSAE", "GatedTrainingSAEConfig", {"l1_coefficient": 2.0}, "gated"),
    "jumprelu": ("JumpReLUTrainingSAE", "JumpReLUTrainingSAEConfig",
                 {"jumprelu_bandwidth": 0.1, "jumprelu_sparsity_loss_mode": "tanh", "pre_act_loss_coefficient": 3e-6},
                 "jumprelu"),
    "topk-rescaled": ("TopKTrainingSAE", "TopKTrainingSAEConfig", {"k": 6}, "topk"),
    "topk-plain": ("TopKTrainingSAE", "TopKTrainingSAEConfig", {"k": 6, "rescale_acts_by_decoder_norm": False},
                   "topk"),
    "batchtopk": ("BatchTopKTrainingSAE", "BatchTopKTrainingSAEConfig", {"k": 6.0, "topk_threshold_lr": 0.02},
                  "jumprelu"),
}
# recipe id -> (saecore recipe name, recipe options)
SAECORE_RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "standard": ("standard", {"l1_coefficient": 5.0, "lp_norm": 2.0}),
    "gated": ("gated", {"l1_coefficient": 2.0}),
    "jumprelu": ("jumprelu", {"jumprelu_bandwidth": 0.1, "jumprelu_sparsity_loss_mode": "tanh"}),
    "topk-rescaled": ("topk", {"k": 6}),
    "topk-plain": ("topk", {"k": 6, "rescale_acts_by_decoder_norm": False}),
}
SHARED_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "layer-norm-no-b-dec-in": {"normalize_activations": "layer_norm", "apply_b_dec_to_input": False},
}
BATCHTOPK_THRESHOLD = 0.4


def _case_for_file(file_cfg: dict[str, Any]) -> Case:
    return Case(file_cfg["architecture"], {"reshape_activations": file_cfg["reshape_activations"]})


@pytest.mark.parametrize("options_id", SHARED_OPTIONS)
@pytest.mark.parametrize("recipe_id", SAELENS_RECIPES)
def test_saelens_training_output_loads_in_saecore(recipe_id: str, options_id: str, tmp_path: Path) -> None:
    sae_name, cfg_name, recipe_options, inference_architecture = SAELENS_RECIPES[recipe_id]
    cfg = getattr(sae_lens, cfg_name)(
        d_in=D_IN, d_sae=D_SAE, **recipe_options, **SHARED_OPTIONS[options_id], metadata=saelens_metadata(METADATA)
    )
    training_sae = getattr(sae_lens, sae_name)(cfg)
    randomize_parameters(training_sae)
    if recipe_id == "batchtopk":
        training_sae.topk_threshold = torch.tensor(BATCHTOPK_THRESHOLD, dtype=torch.float64)
    training_sae.save_inference_model(tmp_path)
    file_cfg = read_cfg_json(tmp_path)

    expected = sae_lens.SAE.load_from_disk(tmp_path)
    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert file_cfg["architecture"] == inference_architecture
    assert loaded.cfg.architecture() == inference_architecture
    assert loaded.cfg.metadata.training_architecture == cfg.architecture()
    assert_cfg_carries_file(loaded.cfg.to_dict(), file_cfg, "saecore")
    case = _case_for_file(file_cfg)
    assert_same_outputs(loaded, expected, case, file_cfg, parameters_of(expected))
    if recipe_id != "batchtopk":  # BatchTopK ranks across the batch while training; no per-input match
        with torch.no_grad():
            for x in make_inputs(case):
                assert_close(loaded(x), training_sae(x), f"forward {tuple(x.shape)} vs the SAELens training SAE")


@pytest.mark.parametrize("options_id", SHARED_OPTIONS)
@pytest.mark.parametrize("recipe_id", SAECORE_RECIPES)
def test_saecore_training_output_loads_in_saelens(recipe_id: str, options_id: str, tmp_path: Path) -> None:
    recipe, recipe_options = SAECORE_RECIPES[recipe_id]
    training_sae = saecore.TrainingSAE.from_dict(
        {"architecture": recipe, "d_in": D_IN, "d_sae": D_SAE, **recipe_options, **SHARED_OPTIONS[options_id],
         "metadata": dict(METADATA)}
    )
    randomize_parameters(training_sae)
    training_sae.save_inference_model(tmp_path)
    file_cfg = read_cfg_json(tmp_path)

    loaded = sae_lens.SAE.load_from_disk(tmp_path)

    assert loaded.cfg.architecture() == file_cfg["architecture"]
    assert loaded.cfg.metadata.training_architecture == recipe
    assert_cfg_carries_file(loaded.cfg.to_dict(), file_cfg, "SAELens")
    missing = [key for key in loaded.cfg.to_dict() if key not in file_cfg]
    assert not missing, f"saecore's cfg.json lacks {missing}; SAELens would fill in its own defaults"
    assert_same_outputs(loaded, training_sae, _case_for_file(file_cfg), file_cfg, parameters_of(loaded))


# -- training checkpoints (save_model of a training SAE: the full training config) ------------
SAELENS_CHECKPOINT_RECIPES = ("standard", "gated", "jumprelu", "topk-rescaled")


def _saelens_training_sae(recipe_id: str) -> Any:
    sae_name, cfg_name, recipe_options, _ = SAELENS_RECIPES[recipe_id]
    cfg = getattr(sae_lens, cfg_name)(d_in=D_IN, d_sae=D_SAE, **recipe_options, metadata=saelens_metadata(METADATA))
    training_sae = getattr(sae_lens, sae_name)(cfg)
    randomize_parameters(training_sae)
    return training_sae


@pytest.mark.parametrize("recipe_id", SAELENS_CHECKPOINT_RECIPES)
def test_saelens_training_checkpoint_loads_as_saecore_inference_sae(recipe_id: str, tmp_path: Path) -> None:
    training_sae = _saelens_training_sae(recipe_id)
    training_sae.save_model(tmp_path)
    file_cfg = read_cfg_json(tmp_path)

    expected = sae_lens.SAE.load_from_disk(tmp_path)
    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert loaded.cfg.architecture() == SAELENS_RECIPES[recipe_id][3]
    assert_same_outputs(loaded, expected, _case_for_file(file_cfg), file_cfg, parameters_of(expected))


@pytest.mark.parametrize("recipe_id", SAELENS_CHECKPOINT_RECIPES)
def test_saelens_training_checkpoint_loads_as_saecore_training_sae(recipe_id: str, tmp_path: Path) -> None:
    training_sae = _saelens_training_sae(recipe_id)
    training_sae.save_model(tmp_path)
    recipe_options = SAELENS_RECIPES[recipe_id][2]

    loaded = saecore.TrainingSAE.load_from_disk(tmp_path)

    assert isinstance(loaded, saecore.TrainingSAE)
    loaded_cfg = loaded.cfg.to_dict()
    for key, value in recipe_options.items():
        assert loaded_cfg.get(key) == value, f"training option {key!r}: {loaded_cfg.get(key)!r} != {value!r}"


@pytest.mark.parametrize("recipe_id", SAECORE_RECIPES)
def test_saecore_training_checkpoint_loads_in_saelens(recipe_id: str, tmp_path: Path) -> None:
    recipe, recipe_options = SAECORE_RECIPES[recipe_id]
    training_sae = saecore.TrainingSAE.from_dict(
        {"architecture": recipe, "d_in": D_IN, "d_sae": D_SAE, **recipe_options, "metadata": dict(METADATA)}
    )
    randomize_parameters(training_sae)
    training_sae.save_model(tmp_path)
    file_cfg = read_cfg_json(tmp_path)

    as_inference = sae_lens.SAE.load_from_disk(tmp_path)
    as_training = sae_lens.TrainingSAE.load_from_disk(tmp_path)

    assert as_training.cfg.architecture() == recipe
    training_cfg = as_training.cfg.to_dict()
    for key, value in recipe_options.items():
        assert training_cfg[key] == value, f"training option {key!r}: SAELens read {training_cfg[key]!r}"
    case = _case_for_file(file_cfg)
    assert_same_outputs(as_inference, training_sae, case, file_cfg, parameters_of(as_inference))
    with torch.no_grad():
        for x in make_inputs(case):
            assert_close(as_training(x), training_sae(x), f"forward {tuple(x.shape)} of SAELens's training SAE")
