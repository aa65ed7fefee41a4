"""Time one TopK training step (forward, backward, Adam) on the CPU, in tokens per second.

Compares saecore's sparse step (on a logging step, which builds dense ``feature_acts``,
and on the other steps, which hand them out sparse) with a plain dense-autograd TopK
written here and, when ``sae_lens`` is importable (``pip install "sae-lens>=6,<7"`` beside
saecore), with SAELens's ``TopKTrainingSAE``. Each is timed
without and with a fraction of dead latents (AuxK on).
Not collected by pytest (the name does not start with ``test_``)::

    python plugins/sae_topk/tests/bench_topk_step.py --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable

import torch

Step = Callable[[], None]


def _optimizer(params: list[torch.nn.Parameter], kind: str) -> torch.optim.Optimizer:
    if kind == "default":
        return torch.optim.Adam(params, lr=3e-4)
    return torch.optim.Adam(params, lr=3e-4, **{kind: True})


def _dead_mask(d_sae: int, fraction: float) -> torch.Tensor | None:
    if fraction <= 0:
        return None
    mask = torch.zeros(d_sae, dtype=torch.bool)
    mask[torch.randperm(d_sae, generator=torch.Generator().manual_seed(0))[: int(fraction * d_sae)]] = True
    return mask


class DenseTopK(torch.nn.Module):
    """TopK SAE with decoder-norm rescaling and AuxK as dense autograd ops, no tricks."""

    def __init__(self, d_in: int, d_sae: int, k: int) -> None:
        super().__init__()
        W_dec = torch.nn.init.kaiming_uniform_(torch.empty(d_sae, d_in))
        W_dec = W_dec * (0.1 / W_dec.norm(dim=-1, keepdim=True))
        self.W_dec = torch.nn.Parameter(W_dec)
        self.W_enc = torch.nn.Parameter(W_dec.T.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(d_sae))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))
        self.k = k

    def loss(self, x: torch.Tensor, dead: torch.Tensor | None) -> torch.Tensor:
        norms = self.W_dec.norm(dim=-1)
        hidden = ((x - self.b_dec) @ self.W_enc + self.b_enc) * norms
        values, indices = hidden.topk(self.k, dim=-1)
        acts = torch.zeros_like(hidden).scatter(-1, indices, values.relu())
        x_hat = (acts / norms) @ self.W_dec + self.b_dec
        loss = (x_hat - x).pow(2).sum(-1).mean()
        if dead is not None:
            k_aux = min(x.shape[-1] // 2, int(dead.sum()))
            scale = min(int(dead.sum()) / (x.shape[-1] // 2), 1.0)
            aux_values, aux_indices = torch.where(dead, hidden, -torch.inf).topk(k_aux, dim=-1)
            aux = torch.zeros_like(hidden).scatter(-1, aux_indices, aux_values)
            residual = (x - x_hat).detach()
            loss = loss + scale * ((aux / norms) @ self.W_dec - residual).pow(2).sum(-1).mean()
        return loss


def dense_step(args: argparse.Namespace, x: torch.Tensor, dead: torch.Tensor | None) -> Step:
    model = DenseTopK(args.d_in, args.d_sae, args.k)
    optimizer = _optimizer(list(model.parameters()), args.optimizer)

    def step() -> None:
        model.loss(x, dead).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def saecore_step(args: argparse.Namespace, x: torch.Tensor, dead: torch.Tensor | None, is_logging_step: bool) -> Step:
    """A logging step hands out dense feature_acts; the other steps hand out a sparse COO tensor."""
    from saecore_sae_topk.config import TopKTrainingSAEConfig
    from saecore_sae_topk.topk_training_sae import TopKTrainingSAE

    from saecore import TrainStepInput

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d_in, d_sae=args.d_sae, k=args.k))
    optimizer = _optimizer(list(sae.parameters()), args.optimizer)
    step_input = TrainStepInput(x, {}, dead, n_training_steps=0, is_logging_step=is_logging_step)

    def step() -> None:
        out = sae.training_forward_pass(step_input)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def saelens_step(args: argparse.Namespace, x: torch.Tensor, dead: torch.Tensor | None) -> Step:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=args.d_in, d_sae=args.d_sae, k=args.k))
    optimizer = _optimizer(list(sae.parameters()), args.optimizer)

    def step() -> None:
        out = sae.training_forward_pass(
            TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False)
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_round_robin(steps: dict[str, Step], warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """(fastest, median) seconds per step of each candidate.

    The candidates take turns, so on a shared machine each sees the same background
    load; the fastest step is the least disturbed one.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: (min(values), statistics.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dead-fraction", type=float, default=0.2, help="also time with this fraction dead")
    parser.add_argument("--optimizer", choices=["default", "foreach", "fused"], default="default")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.d_in)

    candidates: dict[str, Callable[[torch.Tensor | None], Step]] = {
        "dense autograd": lambda dead: dense_step(args, x, dead),
    }
    if importlib.util.find_spec("saecore_sae_topk") is not None:
        candidates["saecore, logging step"] = lambda dead: saecore_step(args, x, dead, is_logging_step=True)
        candidates["saecore, other steps"] = lambda dead: saecore_step(args, x, dead, is_logging_step=False)
    if importlib.util.find_spec("sae_lens") is not None:
        candidates["SAELens"] = lambda dead: saelens_step(args, x, dead)

    print(f"d_in={args.d_in} d_sae={args.d_sae} batch={args.batch} k={args.k} threads={args.threads} "
          f"optimizer={args.optimizer} torch={torch.__version__}")
    for fraction in (0.0, args.dead_fraction):
        dead = _dead_mask(args.d_sae, fraction)
        results = time_round_robin({name: build(dead) for name, build in candidates.items()}, args.warmup, args.repeats)
        for name, (fastest, median) in results.items():
            print(f"dead={fraction:4.0%}  {name:30s} {fastest * 1e3:8.1f} ms/step {args.batch / fastest:8.0f} tok/s"
                  f"  (median {median * 1e3:8.1f} ms/step {args.batch / median:8.0f} tok/s)")

if __name__ == "__main__":
    main()
