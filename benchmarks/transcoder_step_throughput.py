"""Steady-state TopK transcoder training step: saecore's ``topk_transcoder`` beside sparsify's transcoder.

Both train a TopK transcoder from ``d_in`` inputs to ``d_out = d_in`` targets (sparsify's
transcoders predict a target as wide as their input) with ``d_sae`` latents and ``k``
active, on one fixed random batch of (input, target) rows that is reused, so only the
step is timed. A step is what each library's trainer runs per batch:

* saecore: ``training_forward_pass`` (MSE to the target plus AuxK), the trainer's
  dead-latent bookkeeping, ``backward``, gradient clipping at norm 1, Adam, ``zero_grad``;
* sparsify (``transcode=True``): ``forward(x, y, dead_mask=...)``, ``fvu + auxk_alpha·auxk``,
  its dead-latent bookkeeping, ``backward``, Adam, ``zero_grad`` (its trainer neither
  clips nor normalises a transcoder's decoder).

A fixed fraction of latents counts as dead (``--dead-fraction``), so both run AuxK. The two
take turns step by step, in a rotating order, so load from other processes hits both
alike; the ratio is the median over rounds of the ratio of two steps taken back to back.
Peak memory is measured afterwards, one fresh process per library, as in
``train_step_throughput.py`` (resident-set growth during two steps on CPU, after the
parameters and Adam state exist; ``max_memory_allocated`` growth on CUDA). Run it beside
eai-sparsify and saecore-transcoders::

    SPARSIFY_DISABLE_TRITON=1 python benchmarks/transcoder_step_throughput.py --json transcoder.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from train_step_throughput import (
    LEARNING_RATE,
    MAX_GRAD_NORM,
    MEMORY_MARKER,
    SPARSIFY_AUXK_ALPHA,
    paired_ratio,
    peak_step_memory,
    record_sparsify_firing,
    synchronizer,
    time_interleaved,
)

IMPLEMENTATIONS = ("saecore", "sparsify")


@dataclass(frozen=True)
class Shape:
    d_in: int
    d_sae: int
    k: int
    batch: int


@dataclass
class TranscoderStep:
    """One training step of a transcoder: loss, ``backward``, optional clipping, Adam, ``zero_grad``."""

    loss: Callable[[], torch.Tensor]
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    clip: bool

    def __call__(self) -> None:
        self.loss().backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def allocate_optimizer_state(self) -> None:
        """Create Adam's moments with a zero update, so memory runs count them as resident."""
        for param in self.params:
            param.grad = torch.zeros_like(param)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def fixed_batch(shape: Shape, dead_fraction: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape.batch, shape.d_in, generator=generator).to(device)
    y = torch.randn(shape.batch, shape.d_in, generator=generator).to(device)
    dead = (torch.rand(shape.d_sae, generator=generator) < dead_fraction).to(device)
    return x, y, dead


def saecore_step(shape: Shape, x: torch.Tensor, y: torch.Tensor, dead: torch.Tensor) -> TranscoderStep:
    from saecore.registry import get_registry
    from saecore.training.optimizer import build_adam
    from saecore.training_sae import TrainStepInput

    entry = get_registry().training_recipe("topk_transcoder")
    cfg = entry.training_config_class(d_in=shape.d_in, d_out=shape.d_in, d_sae=shape.d_sae, k=shape.k,
                                      device=str(x.device))
    sae = entry.training_sae_class(cfg)
    sae.train()
    step_input = TrainStepInput(x, {}, dead, n_training_steps=0, is_logging_step=False, target=y)
    passes_since_fired = torch.zeros(shape.d_sae, device=x.device)
    firing_totals = torch.zeros(shape.d_sae, device=x.device)

    def loss() -> torch.Tensor:
        output = sae.training_forward_pass(step_input)
        with torch.no_grad():  # saecore's FeatureStats.update
            counts = output.latent_firing_counts()
            passes_since_fired.add_(1).masked_fill_(counts > 0, 0)
            firing_totals.add_(counts)
        return output.loss

    params = list(sae.parameters())
    optimizer = build_adam(params, lr=LEARNING_RATE, betas=(0.9, 0.999), implementation="auto", device=x.device)
    return TranscoderStep(loss, params, optimizer, clip=True)


def sparsify_step(shape: Shape, x: torch.Tensor, y: torch.Tensor, dead: torch.Tensor) -> TranscoderStep:
    if x.device.type == "cpu":
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    with contextlib.redirect_stdout(io.StringIO()):  # it prints which decoder kernel it picked
        from sparsify import SparseCoder, SparseCoderConfig

    cfg = SparseCoderConfig(num_latents=shape.d_sae, k=shape.k, transcode=True)
    sae = SparseCoder(shape.d_in, cfg, device=x.device)
    tokens_since_fired = torch.zeros(shape.d_sae, dtype=torch.long, device=x.device)

    def loss() -> torch.Tensor:
        output = sae(x, y, dead_mask=dead)
        record_sparsify_firing(tokens_since_fired, output.latent_indices, x.shape[0])
        return output.fvu + SPARSIFY_AUXK_ALPHA * output.auxk_loss

    params = list(sae.parameters())
    return TranscoderStep(loss, params, torch.optim.Adam(params, lr=LEARNING_RATE), clip=False)


BUILDERS: dict[str, Callable[[Shape, torch.Tensor, torch.Tensor, torch.Tensor], TranscoderStep]] = {
    "saecore": saecore_step,
    "sparsify": sparsify_step,
}


def measure_memory(impl: str, shape: Shape, dead_fraction: float, device: torch.device, steps: int) -> dict:
    """Peak memory a step adds to the resident parameters, Adam state and batch."""
    x, y, dead = fixed_batch(shape, dead_fraction, device)
    return peak_step_memory(BUILDERS[impl](shape, x, y, dead), device, steps)


def memory_in_subprocess(args: argparse.Namespace, impl: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", impl, "--d-in", str(args.d_in),
               "--d-sae", str(args.d_sae), "--k", str(args.k), "--batch", str(args.batch),
               "--dead-fraction", str(args.dead_fraction), "--threads", str(args.threads), "--device", args.device]
    # Allocations above 64 KiB get their own mappings, returned to the OS when freed, so the
    # resident set follows what is live.
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MEMORY_MARKER):
            return json.loads(line.removeprefix(MEMORY_MARKER))
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-in", type=int, default=512, help="input and target width (default 512)")
    parser.add_argument("--d-sae", type=int, default=8192, help="latents (default 8192)")
    parser.add_argument("--k", type=int, default=32, help="active latents per row (default 32)")
    parser.add_argument("--batch", type=int, default=2048, help="rows per step (default 2048)")
    parser.add_argument("--dead-fraction", type=float, default=0.2,
                        help="fraction of latents counted dead, so AuxK runs (default 0.2)")
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds, each library once a round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per library first")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps of each memory measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--memory-child", choices=IMPLEMENTATIONS, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = Shape(args.d_in, args.d_sae, args.k, args.batch)
    if args.memory_child is not None:
        result = measure_memory(args.memory_child, shape, args.dead_fraction, device, args.memory_steps)
        print(MEMORY_MARKER + json.dumps(result))
        return
    x, y, dead = fixed_batch(shape, args.dead_fraction, device)
    steps = {impl: BUILDERS[impl](shape, x, y, dead) for impl in IMPLEMENTATIONS}
    timings = time_interleaved(dict(steps), args.warmup, args.repeats, synchronizer(device))
    del steps
    gc.collect()
    results: dict[str, Any] = {"shape": vars(shape), "device": args.device, "threads": args.threads,
                               "dead_fraction": args.dead_fraction, "repeats": args.repeats, "implementations": {}}
    for impl in IMPLEMENTATIONS:
        seconds = timings.wall[impl]
        results["implementations"][impl] = {
            "seconds": seconds,
            "tok_s_median": shape.batch / statistics.median(seconds),
            "tok_s_best": shape.batch / min(seconds),
            "memory": memory_in_subprocess(args, impl),
        }
    results["saecore_over_sparsify"] = paired_ratio(timings.wall["sparsify"], timings.wall["saecore"])
    print(f"d_in = d_out = {shape.d_in}, d_sae {shape.d_sae}, k {shape.k}, batch {shape.batch}, {args.device}, "
          f"{args.threads} thread(s), {args.repeats} interleaved rounds")
    print(f"{'impl':<10}{'tok/s median':>14}{'tok/s best':>12}{'peak MiB':>10}")
    for impl, row in results["implementations"].items():
        peak = row["memory"].get("peak_bytes")
        peak_text = f"{peak / 2**20:.1f}" if peak is not None else row["memory"].get("error", "?")
        print(f"{impl:<10}{row['tok_s_median']:>14.0f}{row['tok_s_best']:>12.0f}{peak_text:>10}")
    print(f"saecore / sparsify (median of paired rounds): {results['saecore_over_sparsify']:.2f}x")
    if args.json is not None:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
