"""AuxK (Gao et al. 2024, App. B.1): dead latents learn to predict what the live ones miss.

With the latents the trainer counts as dead: ``k_aux = d_in // 2`` (at least 1),
``scale = min(n_dead / k_aux, 1)``, ``k_aux ← min(k_aux, n_dead)``; ``a`` keeps, per
input, the ``k_aux`` highest raw ranking scores ``h'`` (no ReLU) among dead latents;
``ê = (a ⊙ s) W_dec`` (no bias), where ``s`` is the per-latent scale the architecture
decodes with (``1/‖W_dec,i‖`` when it ranks by decoder-norm-scaled scores, else none);
the loss is ``scale · mean_b ‖ê − e‖²`` with ``e = stopgrad(x − x̂)``, before the
recipe's coefficient.

:func:`auxk_loss` differentiates through whatever graph the scores carry (any
architecture's dense step); :func:`auxk_fast_reconstruction` is the fast route of a step
that computed its scores without a graph. Its reconstruction ``ê = a W_dec`` takes the
cheaper of two routes. With ``k_aux = d_in // 2`` ``a`` is far denser than a main TopK
code, and within the block of dead latents it is often a large fraction of the entries:
then BLAS matmuls over the ``[N, n_dead]`` block beat gathering ``N·k_aux`` rows one by
one. When dead latents far outnumber ``k_aux`` the block is mostly zeros and the
gathered (support) route wins again. Either way the forward reuses the ranking scores;
only gradients are computed anew.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from saecore.sparse.decode import decode_support
from saecore.sparse.encoder import preactivations_at_support
from saecore.sparse.support import CodeRowDots, Support

AUX_LOSS_NAME = "auxiliary_reconstruction_loss"
"""The name of the AuxK loss in a step's ``losses`` (SAELens's)."""

TopKSelector = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
"""``(scores [..., n], k) -> (values, indices)``: the k largest of each row, in any order."""

# Use the dense dead-latent block while it holds at most this many latents per AuxK
# latent kept: on CPU the two routes cost the same near 6.4 dead latents per kept one, and the
# gathered route wins above it (docs/benchmarks.md, "AuxK's route").
DENSE_BLOCK_MAX_DEAD_PER_KEPT = 6


def torch_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.topk`` along the last dimension, unsorted: the default :data:`TopKSelector`."""
    return scores.topk(k, dim=-1, sorted=False)


@dataclass(frozen=True)
class AuxKPlan:
    """Which latents AuxK draws from this step, how many per row, and the loss scale."""

    dead_latents: torch.Tensor
    k_aux: int
    scale: float


def auxk_plan(dead_neuron_mask: torch.Tensor | None, d_in: int) -> AuxKPlan | None:
    """The plan for latents ``dead_neuron_mask [n]``; None when none is dead (then the loss is 0)."""
    if dead_neuron_mask is None:
        return None
    dead_latents = dead_neuron_mask.nonzero().squeeze(1)
    n_dead = dead_latents.numel()
    if n_dead == 0:
        return None
    k_aux = max(d_in // 2, 1)
    return AuxKPlan(dead_latents, min(k_aux, n_dead), min(n_dead / k_aux, 1.0))


def auxk_error(reconstruction: torch.Tensor, residual: torch.Tensor, plan: AuxKPlan) -> torch.Tensor:
    """``scale · mean_b ‖ê − e‖²``; ``residual`` is detached here."""
    return plan.scale * (reconstruction - residual.detach()).pow(2).sum(dim=-1).mean()


def auxk_loss(
    plan: AuxKPlan,
    scores: torch.Tensor,
    W_dec: torch.Tensor,
    residual: torch.Tensor,
    latent_scale: torch.Tensor | None = None,
    select: TopKSelector = torch_topk,
    code_row_dots: CodeRowDots | None = None,
) -> torch.Tensor:
    """The AuxK loss (before the coefficient), differentiable through ``scores`` and ``W_dec``.

    ``scores [..., n]`` are the ranking scores ``h'`` of the ``n`` latents ``W_dec [n, d_in]``
    decodes, ``residual [..., d_in]`` is ``x − x̂`` and ``latent_scale [n]`` the per-latent
    decode scale (or None). ``select`` and ``code_row_dots`` are faster kernels an
    architecture may bring; the reconstruction decodes the kept entries only.
    """
    ranked, positions = select(scores.index_select(-1, plan.dead_latents), plan.k_aux)
    latents = plan.dead_latents[positions]
    values = ranked if latent_scale is None else ranked * latent_scale[latents]
    support = Support.of_codes(latents, W_dec.shape[0], code_row_dots)
    reconstruction = decode_support(values, support, W_dec).reshape(residual.shape)
    return auxk_error(reconstruction, residual, plan)


def auxk_fast_reconstruction(
    plan: AuxKPlan,
    sae_in: torch.Tensor,
    hidden_pre: torch.Tensor,
    W_enc: torch.Tensor,
    b_enc: torch.Tensor,
    b_dec: torch.Tensor,
    W_dec: torch.Tensor,
    norms: torch.Tensor | None,
    subtract_b_dec: bool,
    select: TopKSelector = torch_topk,
    code_row_dots: CodeRowDots | None = None,
) -> torch.Tensor:
    """``ê [N, d_in]`` of a step whose scores carry no graph, differentiable w.r.t. the parameters.

    ``sae_in`` is the encoder input ``x − b_dec`` (or the normalised batch ``x``),
    ``hidden_pre`` the ranking scores ``h'`` of every latent (no graph), ``norms`` the
    decoder norms they were scaled by or None (the decode divides them out again, so
    ``ê = h W_dec`` over the kept entries).
    """
    dead_latents = plan.dead_latents
    block = hidden_pre.index_select(1, dead_latents)
    scores, positions = select(block, plan.k_aux)
    if dead_latents.numel() <= DENSE_BLOCK_MAX_DEAD_PER_KEPT * plan.k_aux:
        block_norms = None if norms is None else norms.index_select(0, dead_latents)
        hidden_dead = _DeadBlockPreactivations.apply(
            sae_in, W_enc, b_enc, b_dec, block, dead_latents, block_norms, subtract_b_dec
        )
        kept = torch.zeros_like(hidden_dead, dtype=torch.bool).scatter_(1, positions, True)
        return (hidden_dead * kept) @ W_dec.index_select(0, dead_latents)
    latents = dead_latents[positions]
    support = Support.of_codes(latents, W_dec.shape[0], code_row_dots)  # one sort by latent for both gradients
    with torch.no_grad():
        unscaled = scores.clone() if norms is None else scores / norms[latents]
    values = preactivations_at_support(unscaled, support, sae_in, W_enc, b_enc, b_dec, subtract_b_dec)
    return decode_support(values, support, W_dec)


class _DeadBlockPreactivations(torch.autograd.Function):
    """``h`` on every dead column ``[N, n_dead]``, read from the scores already computed.

    Recomputing ``x W_enc`` on the dead columns under autograd would repeat a matmul the
    ranking already did; only the backward needs BLAS: ``∂W_enc[:, dead] = sae_inᵀ g``.
    No gradient w.r.t. the input is formed.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        sae_in: torch.Tensor,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor,
        b_dec: torch.Tensor,
        block_scores: torch.Tensor,
        dead_latents: torch.Tensor,
        block_norms: torch.Tensor | None,
        subtract_b_dec: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(sae_in, W_enc, dead_latents)
        ctx.subtract_b_dec = subtract_b_dec
        return block_scores.clone() if block_norms is None else block_scores / block_norms

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        sae_in, W_enc, dead_latents = ctx.saved_tensors
        grad = grad.to(W_enc.dtype)  # under autocast the block, hence this gradient, may be bf16
        grad_block_bias = grad.sum(0)
        grad_W_enc = grad_b_enc = grad_b_dec = None
        if ctx.needs_input_grad[1]:
            grad_W_enc = torch.zeros_like(W_enc).index_copy_(1, dead_latents, sae_in.T @ grad)
        if ctx.needs_input_grad[2]:
            grad_b_enc = grad.new_zeros(W_enc.shape[1]).index_copy_(0, dead_latents, grad_block_bias)
        if ctx.subtract_b_dec and ctx.needs_input_grad[3]:
            # sae_in = x − b_dec enters every dead column through W_enc, as in the gathered route.
            grad_b_dec = -(W_enc.index_select(1, dead_latents) @ grad_block_bias)
        return None, grad_W_enc, grad_b_enc, grad_b_dec, None, None, None, None
