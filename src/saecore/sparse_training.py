"""Training steps of ReLU-like SAEs through the support of their activations, once L0 is small.

A dense standard or JumpReLU step runs five ``B × d_in × d_sae`` products: the encoder
``x_c W_enc``, the decoder ``f W_dec``, and in backward ``∂L/∂f = ∂L/∂x̂ · W_decᵀ``,
``∂W_dec = fᵀ ∂L/∂x̂`` and ``∂W_enc = x_cᵀ ∂L/∂h``. Only the encoder has to be dense. The
other four touch an activation only where it, or its gradient, can be nonzero: the
*support*, which is the active entries (``f ≠ 0``; past the ReLU's or the jump's mask
``∂L/∂h`` is zero) and, for JumpReLU, the straight-through window ``|h − θ| < ε/2`` where
``∂L/∂f`` reaches ``θ``. Over a support of ``nnz`` entries:

- the decoder sums, per input, the decoder rows of its support (one ``embedding_bag``);
- ``∂L/∂f`` is a dot product ``∂L/∂x̂_b · W_dec,i`` per entry of the support (the
  ``embedding_bag`` kernel for its ``per_sample_weights`` gradient);
- ``∂W_dec,i`` and ``∂W_enc[:, i]`` sum the rows ``∂L/∂x̂_b`` and ``x_c,b`` over the entries
  of latent ``i`` (entries sorted by latent once, then one ``embedding_bag`` each);

each ``nnz · d_in`` multiply-adds instead of ``B · d_sae · d_in``, and nothing of size
``nnz × d_in`` is materialised. The penalties (L1, L0 through the step's STE, tanh) are
elementwise, so they are plain autograd on the ``nnz`` values.

A gated step has eight dense products (two decodes, of ``f`` and of ``ReLU(π)``), all but
the encoder confined to the gate's support ``π > 0``; its two paths add their own biases to
one encoder product, which ``support_encoder_products`` gives at the support's entries.

A step takes this route only when its own batch is sparse: the architecture computes the
dense pre-activations and activations as always (so the encoder product is shared),
lists the support, and when it is denser than ``SPARSE_TRAINING_MAX_DENSITY`` finishes
the step densely (the graph it already holds), as a dense step does. A sample of rows
(``clearly_dense``) spares a dense batch the listing. Both routes give the same loss and
gradients up to float rounding.

``SPARSE_TRAINING_MAX_DENSITY`` (1/16) lies below the density where the support route
stops paying on CPU, for every architecture that takes it, loaded machine or quiet;
gated's route, with two decodes and their gradients, stops paying earliest. The
crossovers are in docs/benchmarks.md ("The support route").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from saecore.sparse_decode import decoder_row_dots, latent_runs, sum_rows_by_latent
from saecore.training_sae import TrainingSAE, TrainStepInput, TrainStepOutput, training_step_output

SPARSE_TRAINING_MAX_DENSITY = 1 / 16

# Hook points whose hooks see (and may replace) the dense [N, d_sae] tensors that the
# support route reads without going through them again.
_DENSE_HOOK_POINTS = ("hook_sae_acts_pre", "hook_sae_acts_post")
# Rows counted by the cheap first density test (``clearly_dense``).
_SAMPLE_ROWS = 256


def support_route_possible(sae: TrainingSAE[Any], step_input: TrainStepInput) -> bool:
    """Whether the support route can reproduce this step's loss and every gradient it needs.

    Not when no gradient is wanted (nothing to save), when the input wants its own
    gradient (the route never forms ``∂L/∂x``), under autocast (the dense products run in
    the low precision there, which the route's kernels do not), or when hooks may replace
    the dense activations the route reads. CPU only: the density test reads a count back
    to the host, which on an accelerator would stall the queue the trainer keeps full,
    and the crossover was measured on CPU. Not under ``torch.compile`` either: the count
    and the support's data-dependent size would break the compiled graph, and with it
    the fusions that make a compiled dense step faster.
    """
    x = step_input.sae_in
    if x.device.type != "cpu" or not torch.is_grad_enabled() or x.requires_grad or sae.reshape_hook_z:
        return False
    if torch.compiler.is_compiling():
        return False
    if torch.is_autocast_enabled("cpu"):
        return False
    return not any(getattr(sae, name).is_hooked for name in _DENSE_HOOK_POINTS)


def clearly_dense(feature_acts: torch.Tensor) -> bool:
    """Whether a sample of the batch's rows is already over twice the density limit.

    Listing the support costs a pass that a dense batch wastes, and an exact count of a
    dense ``[N, d_sae]`` tensor costs several percent of a dense step; counting
    ``_SAMPLE_ROWS`` rows spread over the batch costs nothing. A sample that misjudges a
    sparse batch only costs that batch the faster route; the exact test is the support's
    size (``sparse_enough``).
    """
    flat = feature_acts.detach().reshape(-1, feature_acts.shape[-1])
    sample = flat[:: max(1, flat.shape[0] // _SAMPLE_ROWS)]
    return int(torch.count_nonzero(sample)) > 2 * SPARSE_TRAINING_MAX_DENSITY * sample.numel()


def sparse_enough(n_entries: int, activations: torch.Tensor) -> bool:
    """Whether ``n_entries`` of ``activations``' entries are few enough for the support route."""
    return n_entries <= SPARSE_TRAINING_MAX_DENSITY * activations.numel()


@dataclass
class Support:
    """The entries ``(row, latent)`` of an ``[N, d_sae]`` batch that a step needs, row-major.

    ``starts[b]`` is where row ``b``'s entries begin (rows may be empty). The order by
    latent, needed only by the backward products, is made on first use.
    """

    rows: torch.Tensor
    latents: torch.Tensor
    positions: torch.Tensor
    starts: torch.Tensor
    n_rows: int
    d_sae: int
    _by_latent: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    @classmethod
    def of_nonzeros(cls, selector: torch.Tensor) -> Support:
        """The nonzero (or True) entries of ``selector`` ``[..., d_sae]``, leading dimensions flattened."""
        d_sae = selector.shape[-1]
        flat = selector.detach().reshape(-1)
        return cls.at_positions(flat.nonzero().squeeze(1), flat.numel() // d_sae, d_sae)

    @classmethod
    def at_positions(cls, positions: torch.Tensor, n_rows: int, d_sae: int) -> Support:
        """The entries at ascending flat ``positions`` (``row · d_sae + latent``) of an ``[n_rows, d_sae]`` batch."""
        rows = torch.div(positions, d_sae, rounding_mode="floor")
        latents = positions - rows * d_sae
        per_row = torch.bincount(rows, minlength=n_rows)
        return cls(rows, latents, positions, per_row.cumsum(0) - per_row, n_rows, d_sae)

    @property
    def size(self) -> int:
        return self.positions.numel()

    def firing_counts(self, active: torch.Tensor | None = None) -> torch.Tensor:
        """Per latent, how many rows it fired on: all entries, or those where ``active [nnz]`` holds."""
        latents = self.latents if active is None else self.latents[active]
        return torch.bincount(latents, minlength=self.d_sae)

    def by_latent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(order, latent_starts)``: the entries sorted by latent (``latent_runs``), computed once."""
        if self._by_latent is None:
            self._by_latent = latent_runs(self.latents, self.d_sae)
        return self._by_latent

    def sum_rows_by_latent(self, weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``out[i] = Σ_{entries e of latent i} weights[e] · rows[row(e)]``, shape ``[d_sae, rows.shape[1]]``."""
        return sum_rows_by_latent(weights, self.latents, self.rows, rows, self.d_sae, self.by_latent())


class _SupportPreactivations(torch.autograd.Function):
    """``h`` at the support's entries, as a function of ``W_enc``, ``b_enc`` and ``b_dec``.

    The forward reads the dense pre-activations already computed; the backward is the
    sparse part: ``∂W_enc[:, i] = Σ_e ∂L/∂h_e · x_c,row(e)`` over latent ``i``'s entries.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        W_enc: torch.Tensor,
        b_enc: torch.Tensor | None,
        b_dec: torch.Tensor,
        hidden_pre: torch.Tensor,
        sae_in: torch.Tensor,
        support: Support,
        subtract_b_dec: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(W_enc, sae_in)
        ctx.support = support
        ctx.subtract_b_dec = subtract_b_dec
        return hidden_pre.reshape(-1)[support.positions]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        W_enc, sae_in = ctx.saved_tensors
        support: Support = ctx.support
        grad = grad.to(W_enc.dtype)
        grad_b_enc = grad.new_zeros(support.d_sae).index_add_(0, support.latents, grad)
        grad_W_enc = None
        if ctx.needs_input_grad[0]:
            flat_in = sae_in.reshape(support.n_rows, -1)
            grad_W_enc = support.sum_rows_by_latent(grad, flat_in).T.contiguous()
        grad_b_dec = None
        if ctx.subtract_b_dec and ctx.needs_input_grad[2]:
            # x_c = x − b_dec, so b_dec's share is −W_enc · Σ_b ∂L/∂h_b = −W_enc · ∂L/∂b_enc.
            grad_b_dec = -(W_enc @ grad_b_enc)
        return grad_W_enc, grad_b_enc if ctx.needs_input_grad[1] else None, grad_b_dec, None, None, None, None


def support_preactivations(
    sae: TrainingSAE[Any], sae_in: torch.Tensor, hidden_pre: torch.Tensor, support: Support
) -> torch.Tensor:
    """``hidden_pre`` at ``support``'s entries ``[nnz]``, differentiable in ``W_enc``, ``b_enc``, ``b_dec``.

    ``sae_in`` is the encoder input ``x_c`` (``x − b_dec`` when ``apply_b_dec_to_input``) and
    ``hidden_pre = x_c W_enc + b_enc`` the dense pre-activations computed from it.
    """
    return _SupportPreactivations.apply(
        sae.W_enc, sae.b_enc, sae.b_dec, hidden_pre.detach(), sae_in.detach(), support, sae.cfg.apply_b_dec_to_input
    )


def support_encoder_products(
    sae: TrainingSAE[Any], sae_in: torch.Tensor, products: torch.Tensor, support: Support
) -> torch.Tensor:
    """``products = x_c W_enc`` (no bias) at ``support``'s entries ``[nnz]``, differentiable in ``W_enc`` and ``b_dec``.

    For architectures whose encoder product feeds several paths, each with its own bias
    (gated: gate and magnitude), which the caller adds at the support's entries itself.
    """
    return _SupportPreactivations.apply(
        sae.W_enc, None, sae.b_dec, products.detach(), sae_in.detach(), support, sae.cfg.apply_b_dec_to_input
    )


class _SupportDecode(torch.autograd.Function):
    """``Σ_e values[e] · W_dec[latent(e)]`` per row; backward over the support only."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, W_dec: torch.Tensor, support: Support) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(values, W_dec)
        ctx.support = support
        return F.embedding_bag(support.latents, W_dec, support.starts, per_sample_weights=values, mode="sum")

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        values, W_dec = ctx.saved_tensors
        support: Support = ctx.support
        grad_values = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            grad_values = decoder_row_dots(grad, W_dec, support.latents, support.starts, support.rows)
        if ctx.needs_input_grad[1]:
            grad_W_dec = support.sum_rows_by_latent(values, grad)
        return grad_values, grad_W_dec, None


def decode_support(values: torch.Tensor, support: Support, W_dec: torch.Tensor) -> torch.Tensor:
    """``f W_dec`` (no bias) for activations ``f`` given by their ``values`` at ``support``, ``[N, d_in]``."""
    return _SupportDecode.apply(values.to(W_dec.dtype), W_dec, support)


def per_row_sum(values: torch.Tensor, support: Support) -> torch.Tensor:
    """``Σ_i`` over each row's entries: ``[N]``, zero for empty rows."""
    return values.new_zeros(support.n_rows).index_add(0, support.rows, values)


def support_training_output(
    sae: TrainingSAE[Any],
    step_input: TrainStepInput,
    support: Support,
    values: torch.Tensor,
    feature_acts: torch.Tensor,
    hidden_pre: torch.Tensor,
    aux_losses: dict[str, torch.Tensor],
    firing: torch.Tensor,
) -> TrainStepOutput:
    """The step's output when the activations' ``values`` at ``support`` carry the graph.

    The dense activations and pre-activations are returned detached: the trainer only
    reads them, and their own graph (the dense route's) is never differentiated.
    """
    decoded = decode_support(values, support, sae.W_dec).reshape(*hidden_pre.shape[:-1], sae.W_dec.shape[1])
    sae_out = sae.finish_decode(decoded + sae.b_dec)
    return training_step_output(step_input, sae_out, feature_acts.detach(), hidden_pre.detach(), aux_losses, firing)
