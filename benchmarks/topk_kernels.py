"""The compiled TopK kernels of ``saecore-sae-topk`` against the torch operations they replace.

Times, side by side in one process on the same inputs:

- ``row_topk`` (``_row_topk``) against ``torch.topk`` at the training step's shapes: the
  main selection at both sizes of ``train_step_throughput.py`` (default and ``--large``) and
  AuxK's selection among 20% dead latents;
- ``code_dots`` (``_code_dots``) against ``embedding_bag``'s per-sample-weight backward;
- the top-k right after a matmul, which is where the training step runs it: torch's
  OpenMP workers are still spinning then, so the kernel's threading matters. It is timed
  in two child processes, one on torch's OpenMP threads (the default) and one with
  ``SAECORE_TOPK_KERNEL_THREADS=std`` (threads of its own).

::

    python benchmarks/topk_kernels.py [--threads 2] [--repeats 9] [--json results.json]

Medians of ``--repeats`` calls; speedups are torch's time over the kernel's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from saecore.sparse.rows import decoder_row_dots

TOPK_SHAPES = (  # (rows, n, k, what)
    (4096, 4096, 32, "main, d_sae 4096"),
    (4096, 24576, 64, "main, d_sae 24576"),
    (4096, 819, 256, "AuxK, 20% of 4096 dead"),
    (4096, 4915, 384, "AuxK, 20% of 24576 dead"),
)
DOTS_SHAPES = ((4096, 512, 4096, 32), (4096, 768, 24576, 64))  # (rows, d_in, d_sae, k)


def median_ms(call: Callable[[], Any], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def scores_like_an_encoder(rows: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """Pre-activations with an encoder's correlations, not i.i.d. noise."""
    return torch.randn(rows, 256, generator=generator) @ torch.randn(256, n, generator=generator) * 0.05


def time_topk(repeats: int) -> list[dict[str, Any]]:
    from saecore_sae_topk.row_topk import row_topk

    generator = torch.Generator().manual_seed(0)
    results = []
    for rows, n, k, what in TOPK_SHAPES:
        scores = scores_like_an_encoder(rows, n, generator)
        kernel = median_ms(partial(row_topk, scores, k), repeats)
        reference = median_ms(partial(scores.topk, k, dim=-1, sorted=False), repeats)
        results.append({"op": "top-k", "shape": f"{rows}x{n}, k {k}", "what": what, "kernel_ms": kernel,
                        "torch_ms": reference})
    return results


def time_dots(repeats: int) -> list[dict[str, Any]]:
    from saecore_sae_topk.code_dots import code_dots

    generator = torch.Generator().manual_seed(1)
    results = []
    for rows, d_in, d_sae, k in DOTS_SHAPES:
        grad = torch.randn(rows, d_in, generator=generator)
        W_dec = torch.randn(d_sae, d_in, generator=generator)
        latents = torch.randint(0, d_sae, (rows, k), generator=generator)
        flat, starts = latents.reshape(-1), torch.arange(0, rows * k, k)
        entry_rows = torch.arange(rows * k) // k
        kernel = median_ms(partial(code_dots, grad, W_dec, latents), repeats)
        reference = median_ms(partial(decoder_row_dots, grad, W_dec, flat, starts, entry_rows), repeats)
        results.append({"op": "decode value gradient", "shape": f"{rows}x{d_in}, d_sae {d_sae}, k {k}",
                        "what": "grad[n] . W_dec[latents[n, j]]", "kernel_ms": kernel, "torch_ms": reference})
    return results


def time_topk_after_matmul(repeats: int) -> float:
    """Median ms of a top-k (4096 x 4096, k 32) issued right after a matmul, in this process's threading."""
    from saecore_sae_topk.row_topk import row_topk

    generator = torch.Generator().manual_seed(2)
    x, W = torch.randn(4096, 512, generator=generator), torch.randn(512, 4096, generator=generator)
    scores = x @ W
    times = []
    for _ in range(repeats + 1):
        torch.mm(x, W)
        start = time.perf_counter()
        row_topk(scores, 32)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1e3


def after_matmul_in_child(threads: int, repeats: int, env_extra: dict[str, str]) -> float:
    command = [sys.executable, os.path.abspath(__file__), "--after-matmul-child", "--threads", str(threads),
               "--repeats", str(repeats)]
    done = subprocess.run(command, env={**os.environ, **env_extra}, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--after-matmul-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.after_matmul_child:
        print(time_topk_after_matmul(args.repeats))
        return

    from saecore_sae_topk.native_kernels import kernel_instruction_set

    instruction_set = kernel_instruction_set()
    if instruction_set is None:
        sys.exit("saecore-sae-topk was installed without its kernels (no C++ compiler at install time)")
    print(f"{torch.__version__}, {args.threads} threads, kernels on {instruction_set}")
    results = time_topk(args.repeats) + time_dots(args.repeats)
    print(f"{'op':<22} {'shape':<32} {'kernel ms':>10} {'torch ms':>9} {'speedup':>8}  what")
    for row in results:
        row["speedup"] = row["torch_ms"] / row["kernel_ms"]
        print(f"{row['op']:<22} {row['shape']:<32} {row['kernel_ms']:>10.2f} {row['torch_ms']:>9.2f} "
              f"{row['speedup']:>8.2f}  {row['what']}")
    on_openmp = after_matmul_in_child(args.threads, args.repeats, {})
    on_own_threads = after_matmul_in_child(args.threads, args.repeats, {"SAECORE_TOPK_KERNEL_THREADS": "std"})
    print(f"top-k right after a matmul: {on_openmp:.2f} ms on torch's OpenMP threads, "
          f"{on_own_threads:.2f} ms on threads of its own ({on_own_threads / on_openmp:.2f}x)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"instruction_set": instruction_set, "threads": args.threads, "results": results,
                       "after_matmul_ms": {"openmp": on_openmp, "own_threads": on_own_threads}}, out, indent=2)


if __name__ == "__main__":
    main()
