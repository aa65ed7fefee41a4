"""abstopk and matching_pursuit SAEs cross between SAELens 6.x and saecore both ways, and train alike.

Each case is built in one library with random parameters, saved, loaded by the other and
compared on flat and sequence inputs; a float64 formula is not repeated here (the plugins'
own tests hold those). Training steps are compared loss by loss and gradient by gradient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from saelens_compat_support import (
    METADATA,
    assert_cfg_carries_file,
    assert_close,
    parameters_of,
    read_cfg_json,
    saelens_metadata,
)

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

D_IN, D_SAE = 12, 40
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "abstopk": ("abstopk", {"k": 5}),
    "abstopk-rescale": ("abstopk", {"k": 5, "rescale_acts_by_decoder_norm": True}),
    "abstopk-rescale-no-b-dec-in": ("abstopk", {"k": 9, "rescale_acts_by_decoder_norm": True,
                                                "apply_b_dec_to_input": False}),
    "abstopk-layer-norm": ("abstopk", {"k": 5, "normalize_activations": "layer_norm"}),
    "matching_pursuit": ("matching_pursuit", {}),
    "matching_pursuit-threshold": ("matching_pursuit", {"residual_threshold": 1.5, "stop_on_duplicate_support": False}),
    "matching_pursuit-3-steps": ("matching_pursuit", {"max_iterations": 3, "residual_threshold": 0.0,
                                                      "stop_on_duplicate_support": False}),
    "matching_pursuit-no-b-dec-in": ("matching_pursuit", {"apply_b_dec_to_input": False}),
    "matching_pursuit-constant-norm-rescale": ("matching_pursuit", {"normalize_activations": "constant_norm_rescale"}),
}
SAELENS_CLASSES = {"abstopk": ("AbsTopKSAE", "AbsTopKSAEConfig"),
                   "matching_pursuit": ("MatchingPursuitSAE", "MatchingPursuitSAEConfig")}
SAELENS_TRAINING_CLASSES = {"abstopk": ("AbsTopKTrainingSAE", "AbsTopKTrainingSAEConfig"),
                            "matching_pursuit": ("MatchingPursuitTrainingSAE", "MatchingPursuitTrainingSAEConfig")}


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int = 1) -> None:
    """Uneven decoder row norms, nonzero biases; named parameters only, so tied encoders follow the decoder."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in sorted(module.named_parameters()):
        value = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
        if name == "W_dec":
            value = value / D_IN**0.5 * (torch.rand(parameter.shape[0], 1, generator=generator,
                                                    dtype=torch.float64) * 1.5 + 0.5)
        elif name == "W_enc":
            value = value / D_IN**0.5
        else:
            value = value * 0.3
        parameter.copy_(value.to(parameter.dtype))


def inputs(seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, D_IN, generator=generator) * 1.5 + 0.3 for shape in ((7,), (3, 4))]


def saelens_sae(architecture: str, options: dict[str, Any], training: bool = False) -> Any:
    classes = SAELENS_TRAINING_CLASSES if training else SAELENS_CLASSES
    sae_name, cfg_name = classes[architecture]
    cfg = getattr(sae_lens, cfg_name)(d_in=D_IN, d_sae=D_SAE, **options, metadata=saelens_metadata(METADATA))
    sae = getattr(sae_lens, sae_name)(cfg)
    randomize(sae)
    return sae


@torch.no_grad()
def assert_same_outputs(actual: Any, expected: Any) -> None:
    for x in inputs():
        label = f"input {tuple(x.shape)}"
        expected_acts = expected.encode(x)
        firing = float((expected_acts != 0).double().mean())
        assert 0 < firing < 1, f"{label}: degenerate test inputs (firing fraction {firing})"
        assert_close(actual.encode(x), expected_acts, f"{label} encode")
        assert_close(actual(x), expected(x), f"{label} forward")


@pytest.mark.parametrize("case", CASES)
def test_saelens_sae_loads_in_saecore(case: str, tmp_path: Path) -> None:
    architecture, options = CASES[case]
    original = saelens_sae(architecture, options)
    original.save_model(tmp_path)

    loaded = saecore.SAE.load_from_disk(tmp_path)

    assert loaded.cfg.architecture() == architecture
    assert_cfg_carries_file(loaded.cfg.to_dict(), read_cfg_json(tmp_path), "saecore")
    assert sorted(parameters_of(loaded)) == sorted(parameters_of(original))
    assert_same_outputs(loaded, original)


@pytest.mark.parametrize("case", CASES)
def test_saecore_sae_loads_in_saelens(case: str, tmp_path: Path) -> None:
    architecture, options = CASES[case]
    original = saecore.SAE.from_dict({"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, **options,
                                      "metadata": dict(METADATA)})
    randomize(original)
    original.save_model(tmp_path)

    loaded = sae_lens.SAE.load_from_disk(tmp_path)

    assert type(loaded) is getattr(sae_lens, SAELENS_CLASSES[architecture][0])
    file_cfg = read_cfg_json(tmp_path)
    assert_cfg_carries_file(loaded.cfg.to_dict(), file_cfg, "SAELens")
    missing = [key for key in loaded.cfg.to_dict() if key not in file_cfg]
    assert not missing, f"saecore's cfg.json lacks {missing}; SAELens would fill in its own defaults"
    assert_same_outputs(loaded, original)


TRAINING_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "abstopk-rescale": ("abstopk", {"k": 5, "aux_loss_coefficient": 0.5}),
    "abstopk-plain": ("abstopk", {"k": 5, "rescale_acts_by_decoder_norm": False}),
    "matching_pursuit": ("matching_pursuit", {"residual_threshold": 0.5}),
}


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_training_steps_agree(case: str) -> None:
    """Same parameters, inputs and dead latents: the same losses and gradients."""
    architecture, options = TRAINING_CASES[case]
    expected_sae = saelens_sae(architecture, options, training=True)
    actual_sae = saecore.TrainingSAE.from_dict({"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE,
                                                **options, "decoder_init_norm": 1.0})
    actual_sae.load_state_dict(expected_sae.state_dict())
    x = inputs(3)[0]
    dead = torch.arange(D_SAE) % 3 == 0
    expected = expected_sae.training_forward_pass(
        sae_lens.saes.sae.TrainStepInput(x, {}, dead, n_training_steps=0, is_logging_step=False))
    actual = actual_sae.training_forward_pass(saecore.TrainStepInput(x, {}, dead, n_training_steps=0))
    expected.loss.backward()
    actual.loss.backward()

    assert set(actual.losses) == set(expected.losses)
    for name, value in expected.losses.items():
        assert_close(actual.losses[name].reshape(()), value.reshape(()), f"loss {name}")
    expected_grads = {name: p.grad for name, p in expected_sae.named_parameters()}
    for name, parameter in actual_sae.named_parameters():
        assert_close(parameter.grad, expected_grads[name], f"gradient of {name}")


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_trained_saecore_sae_loads_in_saelens(case: str, tmp_path: Path) -> None:
    architecture, options = TRAINING_CASES[case]
    trained = saecore.TrainingSAE.from_dict({"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, **options,
                                             "metadata": dict(METADATA)})
    randomize(trained, seed=4)
    trained.save_inference_model(tmp_path)

    loaded = sae_lens.SAE.load_from_disk(tmp_path)

    assert type(loaded) is getattr(sae_lens, SAELENS_CLASSES[architecture][0])
    assert_same_outputs(loaded, trained)
