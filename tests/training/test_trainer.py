"""The step loop: Adam, clipping, schedules, dead-latent masks, autocast, scaling."""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from training_helpers import ToySource, ToySourceConfig

from saecore.evals.reconstruction import evaluate_reconstruction
from saecore.training import LoggingConfig, SAETrainer, TrainerConfig
from saecore.training_sae import TrainCoefficientConfig, TrainStepInput, TrainStepOutput


def _trainer_config(tmp_path: Path, **overrides: Any) -> TrainerConfig:
    values: dict[str, Any] = {
        "training_tokens": 30 * 16, "train_batch_size_tokens": 16, "lr": 1e-2, "n_eval_batches": 1,
        "dead_feature_window": 3, "output_path": None, "checkpoint_path": tmp_path / "ckpt", "verbose": False,
    }
    values.update(overrides)
    return TrainerConfig(**values)


def _sae(**overrides: Any) -> StandardTrainingSAE:
    torch.manual_seed(0)
    return StandardTrainingSAE(StandardTrainingSAEConfig(**{"d_in": 8, "d_sae": 16, **overrides}))


def _reference_adam_steps(
    params: dict[str, torch.Tensor], batches: list[torch.Tensor], *, lrs: list[float], l1s: list[float],
    max_grad_norm: float, betas: tuple[float, float],
) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The standard SAE's loss, clipping and Adam written out in float64."""
    p = {k: v.detach().double().clone().requires_grad_(True) for k, v in params.items()}
    m = {k: torch.zeros_like(v) for k, v in p.items()}
    v2 = {k: torch.zeros_like(v) for k, v in p.items()}
    grad_norms = []
    for t, (x, lr, l1) in enumerate(zip(batches, lrs, l1s), start=1):
        x = x.double()
        f = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
        x_hat = f @ p["W_dec"] + p["b_dec"]
        mse = ((x_hat - x) ** 2).sum(-1).mean()
        l1_term = (f * p["W_dec"].norm(dim=1)).abs().sum(-1).mean()
        grads = torch.autograd.grad(mse + l1 * l1_term, list(p.values()))
        total = math.sqrt(sum(float((g**2).sum()) for g in grads))
        grad_norms.append(total)
        clip = min(1.0, max_grad_norm / (total + 1e-6))
        with torch.no_grad():
            for (name, value), grad in zip(p.items(), grads):
                g = grad * clip
                m[name] = betas[0] * m[name] + (1 - betas[0]) * g
                v2[name] = betas[1] * v2[name] + (1 - betas[1]) * g**2
                m_hat = m[name] / (1 - betas[0] ** t)
                v_hat = v2[name] / (1 - betas[1] ** t)
                value -= lr * m_hat / (v_hat.sqrt() + 1e-8)
    return {k: v.detach() for k, v in p.items()}, grad_norms


def test_steps_match_a_float64_adam_with_clipping_and_warm_ups(tmp_path: Path) -> None:
    sae = _sae(l1_coefficient=0.3, l1_warm_up_steps=2)
    initial = {k: v.detach().clone() for k, v in sae.named_parameters()}
    cfg = _trainer_config(tmp_path, lr_warm_up_steps=3, max_grad_norm=0.05, adam_beta1=0.8, adam_beta2=0.95)
    source, twin = ToySource(ToySourceConfig(), seed=3), ToySource(ToySourceConfig(), seed=3)
    trainer = SAETrainer(cfg, sae, source)
    n_steps = 4
    for _ in range(n_steps):
        trainer._train_step()

    lrs = [1e-2 * f for f in (1 / 3, 2 / 3, 1.0, 1.0)]
    l1s = [0.3 * f for f in (0.5, 1.0, 1.0, 1.0)]
    batches = [twin.next_batch(16) for _ in range(n_steps)]
    expected, grad_norms = _reference_adam_steps(
        initial, batches, lrs=lrs, l1s=l1s, max_grad_norm=0.05, betas=(0.8, 0.95)
    )
    assert min(grad_norms) > 0.05, "the test must exercise clipping"
    for name, param in sae.named_parameters():
        torch.testing.assert_close(param.detach().double(), expected[name], rtol=1e-4, atol=1e-6, msg=name)
    assert all(p.grad is None for p in sae.parameters()), "zero_grad(set_to_none=True)"
    assert (trainer.n_training_steps, trainer.n_training_tokens) == (4, 64)


class SpySAE(StandardTrainingSAE):
    """Records what the trainer hands to each training forward pass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inputs: list[TrainStepInput] = []
        self.firing: list[torch.Tensor] = []
        self.autocast: list[tuple[bool, torch.dtype]] = []

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {"l1": TrainCoefficientConfig(self.cfg.l1_coefficient, 4), "extra": 7.0}

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        self.inputs.append(step_input)
        self.autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        output = super().training_forward_pass(step_input)
        self.firing.append(output.latent_firing_counts().detach().clone())
        return output


def test_dead_masks_coefficients_and_logging_flags_passed_to_the_sae(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sae = SpySAE(StandardTrainingSAEConfig(d_in=8, d_sae=16, l1_coefficient=2.0))
    with torch.no_grad():
        sae.b_enc[:4] = -100.0  # four latents that can never fire
    cfg = _trainer_config(tmp_path, training_tokens=12 * 16, dead_feature_window=3)
    trainer = SAETrainer(cfg, sae, ToySource(ToySourceConfig(), seed=0), logging=LoggingConfig(wandb_log_frequency=5))
    trainer.fit()

    since = torch.zeros(16)
    for step, (step_input, fired) in enumerate(zip(sae.inputs, sae.firing)):
        assert step_input.n_training_steps == step
        assert step_input.dead_neuron_mask is not None
        assert step_input.dead_neuron_mask.tolist() == (since > 3).tolist(), f"step {step}"
        assert step_input.coefficients == pytest.approx({"l1": 2.0 * min((step + 1) / 4, 1.0), "extra": 7.0})
        assert step_input.is_logging_step == ((step + 1) % 5 == 0)
        since = torch.where(fired > 0, torch.zeros_like(since), since + 1)
    assert sae.inputs[-1].dead_neuron_mask is not None and sae.inputs[-1].dead_neuron_mask[:4].all()
    assert sae.cfg.metadata.num_dead_features == int((since > 3).sum())
    assert not any(enabled for enabled, _ in sae.autocast)


def test_autocast_runs_the_forward_in_bfloat16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sae = SpySAE(StandardTrainingSAEConfig(d_in=8, d_sae=16))
    trainer = SAETrainer(_trainer_config(tmp_path, training_tokens=3 * 16, autocast=True), sae,
                         ToySource(ToySourceConfig(), seed=0))
    trainer.fit()
    assert sae.autocast == [(True, torch.bfloat16)] * 3
    assert all(p.dtype == torch.float32 for p in sae.parameters())


def test_training_lowers_the_reconstruction_error(tmp_path: Path) -> None:
    sae = _sae(l1_coefficient=0.01)
    source = ToySource(ToySourceConfig(), seed=1)
    before = evaluate_reconstruction(sae, [ToySource(ToySourceConfig(), seed=99).next_batch(256)])
    trainer = SAETrainer(_trainer_config(tmp_path, training_tokens=150 * 16), sae, source)
    trainer.fit()
    after = evaluate_reconstruction(sae, [ToySource(ToySourceConfig(), seed=99).next_batch(256)])
    assert after.mse < 0.5 * before.mse
    assert after.explained_variance > 0.5


def test_input_scale_is_estimated_trained_on_and_folded_in(tmp_path: Path) -> None:
    sae = _sae(normalize_activations="expected_average_only_in")
    source_cfg = ToySourceConfig(offset=5.0)
    cfg = _trainer_config(tmp_path, n_batches_for_norm_estimate=4, n_eval_batches=2, training_tokens=10 * 16)
    trainer = SAETrainer(cfg, sae, ToySource(source_cfg, seed=2))
    trainer.fit()

    assert sae.cfg.normalize_activations == "none"
    assert trainer.scaling_factor is None
    twin = ToySource(source_cfg, seed=2)
    norm_batches = [twin.next_batch(16) for _ in range(4)]
    expected_scale = math.sqrt(8) / float(torch.cat(norm_batches).double().norm(dim=-1).mean())
    assert expected_scale < 0.9, "the offset makes the scale matter"
    for _ in range(10):
        twin.next_batch(16)
    eval_batches = [twin.next_batch(16) for _ in range(2)]
    folded = evaluate_reconstruction(sae, eval_batches)
    assert trainer.final_metrics is not None
    assert folded.mse == pytest.approx(trainer.final_metrics.mse, rel=1e-4)
    assert folded.l0 == pytest.approx(trainer.final_metrics.l0)


class DeviceSource(ToySource):
    """Batches drawn on the GPU itself: a host-to-device copy of each batch would be a sync of its own."""

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.cfg.d_in, device=self.device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA to detect host-device syncs")
def test_no_host_sync_between_logging_steps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=64, d_sae=256))
    cfg = _trainer_config(tmp_path, device="cuda", train_batch_size_tokens=512, training_tokens=50 * 512)
    trainer = SAETrainer(cfg, sae, DeviceSource(ToySourceConfig(d_in=64), seed=0, device="cuda"),
                         logging=LoggingConfig(wandb_log_frequency=1000))
    trainer._train_step()  # first step: Adam creates its state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(5):
            trainer._train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.n_training_steps == 6


def test_the_trainer_lets_go_of_the_pre_activations_before_backward(tmp_path: Path) -> None:
    """A sparse step keeps no graph reference to its [B, d_sae] pre-activations: only the output holds them."""
    trainer = SAETrainer(_trainer_config(tmp_path), _sae(), ToySource(ToySourceConfig()))
    forward_pass = trainer._training_step
    freed_at_backward: list[bool] = []

    def step_holding_pre_activations_outside_the_graph(step_input: TrainStepInput) -> TrainStepOutput:
        output = forward_pass(step_input)
        assert output.hidden_pre is not None
        output.hidden_pre = output.hidden_pre.detach().clone()
        pre_activations = weakref.ref(output.hidden_pre)
        output.loss.register_hook(lambda grad: freed_at_backward.append(pre_activations() is None))
        return output

    trainer._training_step = step_holding_pre_activations_outside_the_graph
    outputs = [trainer._train_step() for _ in range(2)]
    assert freed_at_backward == [True, True]
    assert all(output.hidden_pre is None for output in outputs)


def test_a_recipe_declares_more_forward_only_tensors_and_the_trainer_frees_them(tmp_path: Path) -> None:
    """A recipe's own output type names what only its forward pass needs; the trainer drops it generically."""

    @dataclass
    class GatedStepOutput(TrainStepOutput):
        FORWARD_ONLY_FIELDS: ClassVar[tuple[str, ...]] = (*TrainStepOutput.FORWARD_ONLY_FIELDS, "gate_pre")
        gate_pre: torch.Tensor | None = None

    trainer = SAETrainer(_trainer_config(tmp_path), _sae(), ToySource(ToySourceConfig()))
    forward_pass = trainer._training_step
    freed_at_backward: list[bool] = []

    def step_with_a_gate(step_input: TrainStepInput) -> TrainStepOutput:
        output = forward_pass(step_input)
        gated = GatedStepOutput(**{f.name: getattr(output, f.name) for f in fields(output)})
        gated.gate_pre = torch.randn(step_input.sae_in.shape[0], 16)
        gate_pre = weakref.ref(gated.gate_pre)
        gated.loss.register_hook(lambda grad: freed_at_backward.append(gate_pre() is None))
        return gated

    trainer._training_step = step_with_a_gate
    output = trainer._train_step()
    assert freed_at_backward == [True]
    assert isinstance(output, GatedStepOutput) and output.gate_pre is None and output.hidden_pre is None
