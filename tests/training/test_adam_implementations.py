"""optimizer_implementation: every Adam kernel does the same update, and keeps its kernel across a resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from saecore_sae_standard.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from training_helpers import ToySource, ToySourceConfig

from saecore.training import SAETrainer, TrainerConfig
from saecore.training.optimizer import build_adam, resolve_adam_implementation

IMPLEMENTATIONS = ("auto", "fused", "foreach", "for_loop")
LR, BETAS, EPS = 0.05, (0.8, 0.95), 1e-8
SHAPES = ((6, 5), (5,), (3, 4))


def _initial(dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype) for shape in SHAPES]


def _gradient(step: int, index: int, param: torch.Tensor) -> torch.Tensor:
    """A fixed, parameter-dependent gradient sequence (so the trajectories can diverge if the updates differ)."""
    generator = torch.Generator().manual_seed(100 * step + index)
    noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
    return (param.detach().double() ** 3 + noise).to(param.dtype)


def _reference_adam(initial: list[torch.Tensor], n_steps: int) -> list[torch.Tensor]:
    """Adam with bias correction, written out in float64."""
    params = [p.double().clone() for p in initial]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(1, n_steps + 1):
        for i, p in enumerate(params):
            g = _gradient(t, i, p)
            m[i] = BETAS[0] * m[i] + (1 - BETAS[0]) * g
            v[i] = BETAS[1] * v[i] + (1 - BETAS[1]) * g**2
            m_hat, v_hat = m[i] / (1 - BETAS[0] ** t), v[i] / (1 - BETAS[1] ** t)
            p -= LR * m_hat / (v_hat.sqrt() + EPS)
    return params


def _run(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: range) -> None:
    for t in steps:
        for i, p in enumerate(params):
            p.grad = _gradient(t, i, p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 2e-5)])
def test_every_implementation_matches_a_float64_adam(implementation: str, dtype: torch.dtype, tolerance: float) -> None:
    initial = _initial(dtype)
    params = [torch.nn.Parameter(p.clone()) for p in initial]
    optimizer = build_adam(params, lr=LR, betas=BETAS, implementation=implementation, device=torch.device("cpu"))
    _run(optimizer, params, range(1, 5))
    for param, expected in zip(params, _reference_adam(initial, 4)):
        torch.testing.assert_close(param.detach().double(), expected, rtol=tolerance, atol=tolerance)


def test_auto_is_fused_on_cuda_and_cpu_and_torch_default_elsewhere() -> None:
    assert resolve_adam_implementation("auto", torch.device("cuda", 0)) == "fused"
    assert resolve_adam_implementation("auto", torch.device("cpu")) == "fused"
    assert resolve_adam_implementation("auto", torch.device("mps")) is None
    assert resolve_adam_implementation("foreach", torch.device("cuda")) == "foreach"


@pytest.mark.parametrize(("implementation", "fused", "foreach"),
                         [("fused", True, False), ("foreach", False, True), ("for_loop", False, False)])
def test_the_trainer_builds_the_configured_adam(
    tmp_path: Path, implementation: str, fused: bool, foreach: bool
) -> None:
    cfg = TrainerConfig(training_tokens=64, train_batch_size_tokens=32, optimizer_implementation=implementation,
                        output_path=None, checkpoint_path=tmp_path, verbose=False)
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=8, d_sae=16))
    trainer = SAETrainer(cfg, sae, ToySource(ToySourceConfig()))
    group = trainer.optimizer.param_groups[0]
    assert (group["fused"], group["foreach"]) == (fused, foreach)


@pytest.mark.parametrize(("written_by", "resumed_with"), [("fused", "for_loop"), ("for_loop", "fused")])
def test_a_resumed_adam_keeps_its_own_implementation_and_the_trajectory(written_by: str, resumed_with: str) -> None:
    cpu = torch.device("cpu")
    initial = _initial(torch.float64)
    first = [torch.nn.Parameter(p.clone()) for p in initial]
    writer = build_adam(first, lr=LR, betas=BETAS, implementation=written_by, device=cpu)
    _run(writer, first, range(1, 3))

    second = [torch.nn.Parameter(p.detach().clone()) for p in first]
    reader = build_adam(second, lr=LR, betas=BETAS, implementation=resumed_with, device=cpu)
    reader.load_state_dict(writer.state_dict())
    group = reader.param_groups[0]
    assert group["fused"] == (resumed_with == "fused")
    assert group["foreach"] is False
    step = reader.state[second[0]]["step"]
    assert step.device == cpu and float(step) == 2.0
    _run(reader, second, range(3, 5))
    for param, expected in zip(second, _reference_adam(initial, 4)):
        torch.testing.assert_close(param.detach(), expected, rtol=1e-10, atol=1e-10)


def test_an_unknown_implementation_is_rejected_by_the_config() -> None:
    with pytest.raises(ValueError, match="optimizer_implementation"):
        TrainerConfig(optimizer_implementation="sgd")
