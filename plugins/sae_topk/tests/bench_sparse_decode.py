"""Where decoding through the nonzeros beats the dense matmul: time both against L0.

An SAE with ReLU-style activations (standard, JumpReLU) hands ``decode`` a dense
``[N, d_sae]`` tensor with ``L0`` nonzeros per row. The dense route is one
``[N, d_sae] @ [d_sae, d_in]`` matmul; the sparse route (``decode_through_nonzeros``,
which ``saecore.sparse.decode_product`` takes below its density threshold) finds
the nonzeros and sums their decoder rows with ``embedding_bag``. This prints both times
per L0 and the crossover density, which is what ``SPARSE_DECODE_MAX_DENSITY`` should be
on the machine. Not collected by pytest::

    python plugins/sae_topk/tests/bench_sparse_decode.py --threads 2
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from saecore.sparse.decode import decode_through_nonzeros


def activations(n: int, d_sae: int, l0: int, generator: torch.Generator) -> torch.Tensor:
    """Nonnegative activations with exactly ``l0`` nonzeros per row, at random latents."""
    scores = torch.rand(n, d_sae, generator=generator)
    kept = scores.topk(l0, dim=-1).indices
    return torch.zeros(n, d_sae).scatter_(-1, kept, torch.rand(n, l0, generator=generator) + 0.1)


Decode = Callable[[], torch.Tensor]


def time_pair(dense: Decode, sparse: Decode, repeats: int) -> tuple[float, float]:
    """Best-of seconds of each, taking turns so background load hits both alike."""
    dense(), sparse()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, bucket in ((dense, times[0]), (sparse, times[1])):
            start = time.perf_counter()
            run()
            bucket.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


@torch.no_grad()
def speedups(d_in: int, d_sae: int, n: int, repeats: int, generator: torch.Generator) -> list[tuple[float, float]]:
    """``(density, dense time / sparse time)`` per L0, printing each measurement."""
    W_dec = torch.randn(d_sae, d_in, generator=generator)
    rows = []
    for l0 in (8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        if l0 > d_sae // 2:
            break
        f = activations(n, d_sae, l0, generator)
        dense_s, sparse_s = time_pair(
            lambda f=f: f @ W_dec,
            lambda f=f: decode_through_nonzeros(f, W_dec),
            repeats,
        )
        rows.append((l0 / d_sae, dense_s / sparse_s))
        print(f"d_in={d_in} d_sae={d_sae} L0={l0:5d} density={l0 / d_sae:.4f}  dense {dense_s * 1e3:8.1f} ms  "
              f"sparse {sparse_s * 1e3:8.1f} ms  sparse speed-up {dense_s / sparse_s:6.2f}x", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="rows decoded at once")
    parser.add_argument("--shape", action="append", help="d_in,d_sae (default 512,4096 and 768,24576)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shape or ["512,4096", "768,24576"]]
    print(f"N={args.n} threads={args.threads} torch={torch.__version__}")
    for d_in, d_sae in shapes:
        rows = speedups(d_in, d_sae, args.n, args.repeats, generator)
        paying = [density for density, speedup in rows if speedup > 1]
        verdict = f"sparse pays up to density {max(paying):.4f}" if paying else "sparse never pays"
        print(f"d_in={d_in} d_sae={d_sae}: {verdict}")


if __name__ == "__main__":
    main()
