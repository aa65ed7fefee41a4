"""Launching small 2-rank CPU jobs (gloo) from a test, and the configs they run.

Jobs are real processes: torchrun (``python -m torch.distributed.run``) where the test
is about the job as a user runs it, and bare processes with torchrun's variables where
the test needs to watch one rank on its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("rank_worker.py")
JOB_TIMEOUT_S = 120


@dataclass(frozen=True)
class JobResult:
    returncode: int
    output: str
    seconds: float
    finished_at: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def job_env() -> dict[str, str]:
    """The parent's environment without a parent job's variables, one thread per rank."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    return env


def torchrun(args: list[str], *, nproc: int = 2, cwd: Path | None = None) -> JobResult:
    """``torchrun --nproc_per_node nproc ARGS`` on a free port; stdout and stderr together."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *args,
    ]
    started = time.time()
    job = subprocess.Popen(command, env=job_env(), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # SIGTERM, which torchrun passes on: its ranks run in sessions of their own, so
        # killing torchrun outright (what subprocess.run's timeout does) leaves them running.
        job.terminate()
        try:
            output, _ = job.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            job.kill()
            output, _ = job.communicate()
        output += f"\n[the job was still running after {JOB_TIMEOUT_S} s and was stopped]"
    finished = time.time()
    return JobResult(job.returncode, output, finished - started, finished)


def write_spec(folder: Path, config: dict[str, Any], **extra: Any) -> Path:
    """A rank_worker spec; results go to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"config": config, "result_dir": str(folder), **extra}))
    return spec


def start_ranks(spec: Path, world_size: int = 2, **extra_env: str) -> list[subprocess.Popen[str]]:
    """The ranks of a job as bare processes (what torchrun would start), stderr captured."""
    port = str(free_port())
    processes = []
    for rank in range(world_size):
        env = {**job_env(), **extra_env}
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        processes.append(subprocess.Popen([sys.executable, str(WORKER), str(spec)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return processes


def synthetic_config(tmp_path: Path, sae: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A tiny run on the synthetic source: 40 steps of 32 tokens, d_in=16, written under ``tmp_path``."""
    config: dict[str, Any] = {
        "sae": {"d_in": 16, "d_sae": 32, **sae},
        "source": {"name": "synthetic", "d_in": 16, "n_features": 24, "avg_active_features": 3.0},
        "training_tokens": 40 * 32,
        "train_batch_size_tokens": 32,
        "lr": 1e-2,
        "dead_feature_window": 5,
        "feature_sampling_window": 15,
        "n_batches_for_norm_estimate": 2,
        "n_eval_batches": 2,
        "output_path": str(tmp_path / "output"),
        "checkpoint_path": str(tmp_path / "checkpoints"),
        "verbose": False,
        "distributed_timeout_s": 20.0,
    }
    config.update(overrides)
    return config


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "sae_weights.safetensors"))


def max_weight_difference(a: Path, b: Path) -> dict[str, float]:
    """Largest absolute difference of each saved tensor, computed in float64."""
    weights_a, weights_b = weights(a), weights(b)
    assert weights_a.keys() == weights_b.keys()
    return {name: float((weights_a[name].double() - weights_b[name].double()).abs().max()) for name in weights_a}


def latest_checkpoint(folder: Path) -> Path:
    """The checkpoint written after the most tokens (folders are named by token count)."""
    numbered = [child for child in folder.iterdir() if child.name.isdigit()]
    assert numbered, f"no checkpoint in {folder}"
    return max(numbered, key=lambda child: int(child.name))
