"""``out[n, j] = grad[n] · W_dec[latents[n, j]]``: a TopK decode's gradient w.r.t. its values.

The compiled ``_code_dots`` kernel computes it on CPU faster than ``embedding_bag``'s
per-sample-weight backward (timings in docs/benchmarks.md), which
``saecore.sparse.rows.decoder_row_dots`` calls and which remains the route for every other
case (GPU, other dtypes, no kernel).
"""

from __future__ import annotations

import torch

from saecore_sae_topk.native_kernels import CODE_DOTS, CODE_DOTS_OP, threads_for


def code_dots_applies(grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor) -> bool:
    """True when the kernel can compute the dots: contiguous float32 rows and int64 latents on CPU."""
    tensors = (grad, W_dec, latents)
    return (
        CODE_DOTS is not None
        and all(t.device.type == "cpu" and t.dim() == 2 and t.is_contiguous() for t in tensors)
        and grad.dtype == W_dec.dtype == torch.float32
        and latents.dtype == torch.int64
        and grad.shape[0] == latents.shape[0]
        and grad.shape[1] == W_dec.shape[1]
    )


def code_dots(
    grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor, threads: int | None = None
) -> torch.Tensor:
    """``[N, k]`` dots of each gradient row ``grad [N, d]`` with the decoder rows its code names.

    Only for inputs where :func:`code_dots_applies`; a latent outside ``W_dec`` raises IndexError.
    """
    if CODE_DOTS_OP is None or not code_dots_applies(grad, W_dec, latents):
        raise ValueError("code_dots needs the _code_dots kernel and contiguous float32 CPU inputs of matching shapes")
    out: torch.Tensor = CODE_DOTS_OP(grad, W_dec, latents, threads_for(latents.shape[0], threads))
    return out
