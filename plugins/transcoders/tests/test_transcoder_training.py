"""The trainer with transcoders: pairs in, each side scaled on its own, scales folded out, bad sources named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from saecore import SAE, ConfigError, TrainingSAE, TrainStepInput
from saecore.cli.train_presets import apply_presets
from saecore.evals.reconstruction import evaluate_reconstruction
from saecore.sources.in_memory import TensorSource, TensorSourceConfig
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig
from saecore.testing.architecture_conformance import randomize_parameters
from saecore.training import SAETrainer, TrainerConfig
from saecore.training.activation_scaler import estimate_scales

D_IN, D_OUT, ROWS = 6, 4, 256


def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of norm ~2.5 and targets ~1000 times larger: one scale for both would fit neither."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(ROWS, D_IN, generator=generator)
    y = 1000 * torch.relu(x @ torch.randn(D_IN, D_OUT, generator=generator))
    return x, y


def transcoder(recipe: str = "skip_transcoder", **fields: Any) -> TrainingSAE[Any]:
    return TrainingSAE.from_dict({"architecture": recipe, "d_in": D_IN, "d_out": D_OUT, "d_sae": 16, **fields})


def trainer_config(**fields: Any) -> TrainerConfig:
    return TrainerConfig(training_tokens=ROWS * 5, train_batch_size_tokens=ROWS, lr=1e-3, n_eval_batches=1,
                         n_batches_for_norm_estimate=2, output_path=None, verbose=False, **fields)


@pytest.mark.filterwarnings("ignore:TensorSourceConfig.data ran out of rows")
def test_input_and_target_scales_are_estimated_apart_and_folded_into_the_saved_weights(tmp_path: Path) -> None:
    x, y = pairs()
    sae = transcoder(normalize_activations="expected_average_only_in")
    trainer = SAETrainer(trainer_config(), sae, TensorSource(TensorSourceConfig(data=x, target=y)))
    trainer.fit()

    # The whole tensor is one batch, so the final metrics (taken before folding, with the scales)
    # and metrics of the folded transcoder on raw rows see the same rows.
    raw = evaluate_reconstruction(trainer.sae, [torch.cat([x, y], 1)])
    assert trainer.final_metrics is not None
    assert raw.mse == pytest.approx(trainer.final_metrics.mse, rel=1e-4)
    assert raw.explained_variance == pytest.approx(trainer.final_metrics.explained_variance, rel=1e-4, abs=1e-6)
    assert trainer.sae.cfg.normalize_activations == "none"
    sae.save_inference_model(tmp_path / "saved")
    saved = SAE.load_from_disk(tmp_path / "saved")
    torch.testing.assert_close(saved(x), trainer.sae(x))


def test_the_scales_are_sqrt_width_over_each_sides_mean_norm() -> None:
    x, y = pairs()
    sae = transcoder(normalize_activations="expected_average_only_in")
    source = TensorSource(TensorSourceConfig(data=x, target=y))
    trainer = SAETrainer(trainer_config(), sae, source)
    estimate_scales(trainer.scales_to_estimate(), source, n_batches=1, batch_size=ROWS)
    assert trainer.scaling_factor == pytest.approx(D_IN**0.5 / x.norm(dim=1).mean().item(), rel=1e-5)
    assert trainer.target_scaling_factor == pytest.approx(D_OUT**0.5 / y.norm(dim=1).mean().item(), rel=1e-5)


@pytest.mark.parametrize("recipe", ["skip_transcoder", "jumprelu_skip_transcoder", "topk_skip_transcoder"])
def test_folding_scales_keeps_what_the_transcoder_predicts(recipe: str) -> None:
    """``sae(s·x)/t`` before folding is ``sae(x)`` after, skip connection included."""
    sae = SAE.from_dict({"architecture": recipe, "d_in": D_IN, "d_out": D_OUT, "d_sae": 16, "dtype": "float64",
                         **({"k": 3} if "topk" in recipe else {})})
    randomize_parameters(sae, nonnegative=("threshold",))
    x = torch.randn(9, D_IN, dtype=torch.float64)
    s, t = 0.37, 4.1
    expected = sae(s * x) / t
    sae.fold_activation_norm_scaling_factor(s, t)
    torch.testing.assert_close(sae(x), expected, rtol=1e-10, atol=1e-10)


def test_a_source_of_inputs_only_is_refused_by_name() -> None:
    source = SyntheticSource(SyntheticSourceConfig(d_in=D_IN + D_OUT, n_features=20))
    with pytest.raises(ConfigError, match=r"topk_transcoder: it trains on \(input, target\) pairs, but the source "
                                          r"\(SyntheticSource\) serves inputs only"):
        SAETrainer(trainer_config(), transcoder("topk_transcoder", k=2), source)


def test_widths_that_do_not_match_the_pairs_are_named() -> None:
    x, y = pairs()
    source = TensorSource(TensorSourceConfig(data=x, target=y[:, :3]))
    with pytest.raises(ConfigError, match=r"predicting d_out=4, but the source \(TensorSource\) serves inputs of "
                                          r"width 6 and targets of width 3; set d_in to 6 and d_out to 3"):
        SAETrainer(trainer_config(), transcoder(), source)


def test_the_cli_takes_d_in_and_d_out_from_a_source_of_pairs() -> None:
    trainer: dict[str, Any] = {}
    values = apply_presets("topk_transcoder", "synthetic_transcoder", 64 + 48, {}, trainer, target_width=48)
    assert (values["d_in"], values["d_out"], values["d_sae"], values["k"]) == (64, 48, 512, 8)
    assert trainer["lr"] == 1e-2


def test_a_checkpoint_keeps_the_target_scale(tmp_path: Path) -> None:
    x, y = pairs()
    source = TensorSource(TensorSourceConfig(data=x, target=y))
    config = trainer_config(checkpoint_path=str(tmp_path))
    trainer = SAETrainer(config, transcoder(normalize_activations="expected_average_only_in"), source)
    estimate_scales(trainer.scales_to_estimate(), source, n_batches=1, batch_size=ROWS)
    folder = trainer.save_checkpoint("scaled")

    resumed = SAETrainer(config, transcoder(normalize_activations="expected_average_only_in"), source)
    resumed.load_checkpoint(folder)
    assert resumed.scaling_factor == trainer.scaling_factor
    assert resumed.target_scaling_factor == trainer.target_scaling_factor is not None


def test_help_shows_d_in_and_d_out_from_a_source_of_pairs(capsys: pytest.CaptureFixture[str]) -> None:
    from saecore.cli.main import main

    try:
        main(["train", "--arch", "topk_transcoder", "--source", "synthetic_transcoder", "--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--d-in VALUE (default: from the source: 64)" in text
    assert "--d-out VALUE (default: from the source: 64)" in text
    assert "--d-sae VALUE (default: 512, 8 × d_in)" in text


@pytest.mark.parametrize("recipe", ["topk_transcoder", "topk_skip_transcoder"])
def test_a_topk_step_on_batch_pos_inputs_has_the_losses_of_its_rows(recipe: str) -> None:
    sae = transcoder(recipe, k=3)
    randomize_parameters(sae, seed=1)
    x, y = pairs()
    dead = torch.zeros(16, dtype=torch.bool)
    dead[::2] = True

    def losses(sae_in: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        step = TrainStepInput(sae_in=sae_in, target=target, coefficients={}, dead_neuron_mask=dead,
                              n_training_steps=0)
        return sae.training_forward_pass(step).losses

    by_position = losses(x[:64].view(8, 8, D_IN), y[:64].view(8, 8, D_OUT))
    by_row = losses(x[:64], y[:64])
    assert by_position.keys() == by_row.keys()
    for name, loss in by_row.items():
        torch.testing.assert_close(by_position[name], loss, msg=name)
