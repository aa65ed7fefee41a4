"""Which route a training step takes: dense, or through the support of its activations.

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
one encoder product, which ``support_encoder_products`` (``saecore.sparse.encoder``) gives at the
support's entries.

A step takes this route only when its own batch is sparse: the architecture computes the
dense pre-activations and activations as always (so the encoder product is shared),
lists the support, and when it is denser than ``SPARSE_TRAINING_MAX_DENSITY`` finishes
the step densely (the graph it already holds). A sample of rows (``clearly_dense``)
spares a dense batch the listing. :func:`sparse_route_support` is that whole sequence.
Both routes give the same loss and gradients up to float rounding
(``saecore.testing.FastRouteConformance`` checks it for an architecture).

``SPARSE_TRAINING_MAX_DENSITY`` (1/16) lies below the density where the support route
stops paying on CPU, for every architecture that takes it, loaded machine or quiet;
gated's route, with two decodes and their gradients, stops paying earliest. The
crossovers are in docs/benchmarks.md ("The support route").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from saecore.sparse.support import Support
from saecore.training_sae import TrainingSAE, TrainStepInput

SPARSE_TRAINING_MAX_DENSITY = 1 / 16

# Hook points whose hooks see (and may replace) the dense [N, d_sae] tensors that the
# support route reads without going through them again.
_DENSE_HOOK_POINTS = ("hook_sae_acts_pre", "hook_sae_acts_post")
# Rows counted by the cheap first density test (``clearly_dense``).
_SAMPLE_ROWS = 256


def support_route_possible(sae: TrainingSAE[Any], step_input: TrainStepInput, *, density_known: bool = False) -> bool:
    """Whether the support route can reproduce this step's loss and every gradient it needs.

    Not when no gradient is wanted (nothing to save), when the input wants its own
    gradient (the route never forms ``∂L/∂x``), under autocast (the dense products run in
    the low precision there, which the route's kernels do not), or when hooks may replace
    the dense activations the route reads. CPU only by default: the density test reads a
    count back to the host, which on an accelerator would stall the queue the trainer
    keeps full, and the crossover was measured on CPU. A step whose density is known
    without a count (``density_known``: BatchTopK's is ``k / d_sae``) may take the route
    elsewhere when ``step_input.accelerator_support_route`` asks for it. Not under
    ``torch.compile`` either: the count and the support's data-dependent size would break
    the compiled graph, and with it the fusions that make a compiled dense step faster.
    """
    x = step_input.sae_in
    on_cpu_or_allowed = x.device.type == "cpu" or (density_known and step_input.accelerator_support_route)
    if not on_cpu_or_allowed or not torch.is_grad_enabled() or x.requires_grad or sae.reshape_hook_z:
        return False
    if torch.compiler.is_compiling():
        return False
    if torch.amp.is_autocast_available(x.device.type) and torch.is_autocast_enabled(x.device.type):
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


def sparse_route_support(
    sae: TrainingSAE[Any],
    step_input: TrainStepInput,
    activations: torch.Tensor,
    find_support: Callable[[], Support | None] | None = None,
) -> Support | None:
    """The support the step runs over, or None when it must finish densely.

    ``activations`` are the step's dense activations (whose density decides);
    ``find_support`` lists the entries the step needs, by default the nonzeros of
    ``activations``; an architecture whose gradient reaches more entries (JumpReLU's
    straight-through window) gives its own, which may return None when this step needs
    the dense route for a reason of its own. It is called only once the route is possible,
    so its own tests never stall an accelerator.
    """
    if not support_route_possible(sae, step_input) or clearly_dense(activations):
        return None
    support = Support.of_nonzeros(activations) if find_support is None else find_support()
    return support if support is not None and sparse_enough(support.size, activations) else None
