"""Throughput benchmark: training tokens per second with 1 rank and with N ranks (torchrun).

Each world size is a real ``torchrun --nproc_per_node N`` job training the same SAE on
the synthetic source for the same number of global batches; the number reported is the
trainer's own (global tokens / seconds of ``fit``), so process start-up and imports are
not counted. Beside it, the CPU seconds all ranks spent per million tokens (process CPU
time of the whole ``runner.run()``, imports excluded): on a shared machine wall-clock rates depend
on what else runs, while CPU work per token shows the cost of going parallel::

    python benchmarks/distributed_throughput.py                    # 1 and 2 ranks, CPU
    python benchmarks/distributed_throughput.py --ranks 1 2 4 --device cuda --d-sae 16384

On the CPU the cores are split evenly between ranks (``--threads`` per rank, default
cores // ranks), so every row uses the whole machine. Two sharding modes can be compared:
``slice`` (every rank draws each global batch and keeps its rows: the synthetic
generation is repeated on every rank) and ``source`` (each rank's source serves only its
own rows). Results and the machine they came from are in docs/distributed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from saecore.sources.cached import derive_seed
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig


class ShardedSyntheticSource(SyntheticSource):
    """The synthetic source with its own stream per rank, so ``source`` sharding can be measured."""

    def shard_for_rank(self, rank: int, world_size: int) -> bool:
        self._generator.manual_seed(derive_seed(self.seed, "rank", rank))
        return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="world sizes to measure")
    parser.add_argument("--arch", default="topk", choices=["standard", "topk"])
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--d-sae", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32, help="TopK's k")
    parser.add_argument("--batch", type=int, default=4096, help="global train_batch_size_tokens")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--sharding", nargs="+", default=["slice", "source"], choices=["slice", "source"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per rank (CPU)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def sae_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {"architecture": args.arch, "d_in": args.d_in, "d_sae": args.d_sae}
    if args.arch == "topk":
        values["k"] = args.k
    return values


def run_worker(args: argparse.Namespace, sharding: str) -> None:
    """One rank: train; every rank writes its CPU time, rank 0 also the trainer's numbers, under ``args.worker``."""
    from saecore.training import TrainingRunner, TrainingRunnerConfig

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = TrainingRunnerConfig.from_dict({
        "sae": sae_values(args),
        "source": {"name": "synthetic", "d_in": args.d_in, "n_features": 2 * args.d_in},
        "training_tokens": args.steps * args.batch,
        "train_batch_size_tokens": args.batch,
        "device": args.device,
        "distributed_sharding": sharding,
        "output_path": None,
        "n_eval_batches": 1,
        "verbose": False,
    })
    assert isinstance(cfg.source, SyntheticSourceConfig)
    source_class = ShardedSyntheticSource if sharding == "source" else SyntheticSource
    runner = TrainingRunner(cfg, source=source_class(cfg.source, seed=cfg.seed, device=cfg.device))
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo: not training work
    cpu_started = time.process_time()
    runner.run()
    numbers: dict[str, Any] = {"cpu_seconds": time.process_time() - cpu_started}
    if runner.is_main_process and runner.summary is not None:
        numbers.update(tokens_per_second=runner.summary.tokens_per_second, seconds=runner.summary.seconds,
                       tokens=runner.summary.n_tokens)
    (Path(args.worker) / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(numbers))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def launch(args: argparse.Namespace, ranks: int, sharding: str) -> dict[str, Any]:
    """A torchrun job of ``ranks`` workers; returns rank 0's numbers."""
    threads = args.threads if args.threads is not None else max(1, (os.cpu_count() or 1) // ranks)
    with tempfile.TemporaryDirectory() as folder:
        forwarded = [
            "--arch", args.arch, "--d-in", str(args.d_in), "--d-sae", str(args.d_sae), "--k", str(args.k),
            "--batch", str(args.batch), "--steps", str(args.steps), "--device", args.device,
            "--threads", str(threads), "--sharding", sharding, "--worker", folder,
        ]
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()), __file__, *forwarded]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, check=True, env=env)
        per_rank = [json.loads((Path(folder) / f"rank{rank}.json").read_text()) for rank in range(ranks)]
    numbers = {key: value for key, value in per_rank[0].items() if key != "cpu_seconds"}
    cpu_seconds = sum(rank["cpu_seconds"] for rank in per_rank)
    numbers["cpu_seconds_per_million_tokens"] = cpu_seconds / numbers["tokens"] * 1e6
    return {"ranks": ranks, "sharding": sharding, "threads_per_rank": threads, **numbers}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        run_worker(args, args.sharding[0])
        return 0
    rows = []
    for sharding in args.sharding:
        for ranks in args.ranks:
            if ranks == 1 and sharding != args.sharding[0]:
                continue  # one rank never shards: the first mode's row is the baseline for all
            rows.append(launch(args, ranks, sharding))
    baseline = rows[0]["tokens_per_second"]
    print(f"{args.arch} d_in={args.d_in} d_sae={args.d_sae} global batch={args.batch} steps={args.steps} "
          f"device={args.device} cores={os.cpu_count()}")
    print(f"{'ranks':>5} {'sharding':>8} {'threads':>7} {'tokens/s':>12} {'vs 1 rank':>9} {'CPU s / M tokens':>16}")
    for row in rows:
        sharding = row["sharding"] if row["ranks"] > 1 else "-"
        print(f"{row['ranks']:>5} {sharding:>8} {row['threads_per_rank']:>7} {row['tokens_per_second']:>12,.0f} "
              f"{row['tokens_per_second'] / baseline:>8.2f}x {row['cpu_seconds_per_million_tokens']:>16.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
