"""compile_training_step: the compiled forward pass computes the same loss and gradients.

Compilation takes seconds even at these sizes, so this file compiles twice only: one
step against a float64 reference, and a short trainer run against an eager one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from training_helpers import ToySource, ToySourceConfig

from saecore.errors import ConfigError
from saecore.training import SAETrainer, TrainerConfig
from saecore.training.compiled_step import compile_unavailable_reason, compiled_training_step
from saecore.training_sae import TrainStepInput

CPU = torch.device("cpu")
UNAVAILABLE = compile_unavailable_reason(CPU)
needs_compiler = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"torch.compile cannot run here: {UNAVAILABLE}")
L1 = 0.3


def _sae() -> StandardTrainingSAE:
    torch.manual_seed(0)
    return StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=16, l1_coefficient=L1))


def _reference_loss_and_grads(
    params: dict[str, torch.Tensor], x: torch.Tensor
) -> tuple[float, dict[str, torch.Tensor]]:
    """The standard SAE's training loss (MSE + λ·Σ f·‖W_dec row‖) and its gradients, in float64."""
    p = {name: value.detach().double().requires_grad_(True) for name, value in params.items()}
    x = x.double()
    f = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
    x_hat = f @ p["W_dec"] + p["b_dec"]
    loss = ((x_hat - x) ** 2).sum(-1).mean() + L1 * (f * p["W_dec"].norm(dim=1)).sum(-1).mean()
    grads = torch.autograd.grad(loss, list(p.values()))
    return float(loss.detach()), dict(zip(p, grads))


@needs_compiler
def test_one_compiled_step_matches_a_float64_reference() -> None:
    sae = _sae()
    x = ToySource(ToySourceConfig(), seed=5).next_batch(32)
    step = compiled_training_step(sae.training_forward_pass, CPU, enabled=True)
    assert step is not sae.training_forward_pass
    output = step(TrainStepInput(x, {"l1": L1}, torch.zeros(16, dtype=torch.bool), n_training_steps=0))
    output.loss.backward()

    expected_loss, expected_grads = _reference_loss_and_grads(dict(sae.named_parameters()), x)
    assert float(output.loss.detach()) == pytest.approx(expected_loss, rel=1e-5)
    for name, param in sae.named_parameters():
        assert param.grad is not None
        torch.testing.assert_close(param.grad.double(), expected_grads[name], rtol=1e-5, atol=1e-6, msg=name)


@needs_compiler
def test_a_compiled_run_trains_like_an_eager_one(tmp_path: Path) -> None:
    finals = []
    for compiled in (False, True):
        cfg = TrainerConfig(training_tokens=4 * 32, train_batch_size_tokens=32, lr=1e-2, compile_training_step=compiled,
                            output_path=None, checkpoint_path=tmp_path, verbose=False)
        sae = _sae()
        trainer = SAETrainer(cfg, sae, ToySource(ToySourceConfig(), seed=7))
        for _ in range(cfg.total_training_steps):
            trainer._train_step()
        finals.append({name: param.detach().clone() for name, param in sae.named_parameters()})
    for name, eager in finals[0].items():
        torch.testing.assert_close(finals[1][name], eager, rtol=1e-5, atol=1e-6, msg=name)


def test_off_returns_the_step_itself() -> None:
    sae = _sae()
    assert compiled_training_step(sae.training_forward_pass, CPU, enabled=False) == sae.training_forward_pass


def test_a_missing_compiler_is_refused_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    sae = _sae()
    with pytest.raises(ConfigError, match=r"compile_training_step=True: .*'/nonexistent/c\+\+' is not on PATH"):
        compiled_training_step(sae.training_forward_pass, CPU, enabled=True)


def test_the_eager_backend_needs_no_compiler_and_computes_the_same_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    sae = _sae()
    step = compiled_training_step(sae.training_forward_pass, CPU, enabled=True, backend="eager")
    assert getattr(step, "_torchdynamo_orig_callable", None) == sae.training_forward_pass
    x = ToySource(ToySourceConfig(), seed=5).next_batch(32)
    step_input = TrainStepInput(x, {"l1": L1}, torch.zeros(16, dtype=torch.bool), n_training_steps=0)
    expected_loss, _ = _reference_loss_and_grads(dict(sae.named_parameters()), x)
    assert float(step(step_input).loss.detach()) == pytest.approx(expected_loss, rel=1e-5)
