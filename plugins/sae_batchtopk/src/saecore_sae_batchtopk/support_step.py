"""BatchTopK's training step over the support of its batch selection (``saecore.sparse``).

The encoder product is the one dense product of the step, computed without a graph (the
TopK plugin's ``encoder_scores``). On CPU the batch's kept entries are found among the
scores not below a bound on the cut-off, a little under the last batch's
(:func:`~saecore_sae_batchtopk.batch_topk.batch_topk_entries_not_below`, with the TopK
plugin's compiled ``entries_not_below``); elsewhere, for the first batch and whenever the
cut-off fell below the bound, from each row's top candidates
(:func:`~saecore_sae_batchtopk.batch_topk.batch_topk_entries`, with its compiled row
top-k). Only their pre-activations re-enter autograd: the decode and both weight gradients
run over those ``≈ k·N`` entries instead of ``N · d_sae``.

With decoder-norm rescaling a kept entry's activation is ``f = h·n > 0`` and the decode
divides it by ``n`` again, so the decoded value is plain ``h``: the norms decide the
selection only, and the loss has no gradient through them (as in the dense step, where
the two paths through ``n`` cancel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from saecore_sae_topk.entries_not_below import entries_not_below
from saecore_sae_topk.row_topk import row_topk
from saecore_sae_topk.sparse_encoder import encoder_scores

from saecore.sparse import SPARSE_TRAINING_MAX_DENSITY, Support, preactivations_at_support, support_route_possible
from saecore.training_sae import TrainingSAE, TrainStepInput, TrainStepOutput, training_step_output
from saecore_sae_batchtopk.batch_topk import batch_topk_entries, batch_topk_entries_not_below

# The next batch's candidates per row: this many times the most entries one row of the last batch kept
# (at initialisation, d_in 512, d_sae 4096, k 32, batch 4096: 65 at most, 32 on average).
CANDIDATE_MARGIN = 1.25

# The next batch's bound on its cut-off: this share of the last batch's cut-off. A cut-off that falls below
# the bound costs one more pass (the row-wise search); at d_in 512, d_sae 4096, k 32, batch 4096 the cut-off
# rose 7-9% a step over the first 12 steps on fresh batches and never fell below it, and the entries not
# below it were 1.6-2.0 times the kept ones in the benchmark's first steps.
CUTOFF_MARGIN = 0.95


@dataclass(frozen=True)
class SearchStart:
    """Where a batch's search for its kept entries starts: candidates per row, and a bound on the cut-off.

    ``bound`` (positive, or None for no bound) is tried first; the row-wise search with
    ``width`` candidates a row runs when there is none or the cut-off fell below it.
    """

    width: int
    bound: float | None = None


@dataclass(frozen=True)
class SupportSelection:
    """One step's batch selection, held at its support (the kept entries with a positive activation).

    ``centred`` is the encoder input ``x_c``, ``hidden_pre`` the ranking scores ``h'``
    ``[N, d_sae]`` (no graph), ``norms`` the decoder norms they were scaled by (or None),
    ``activations`` the reported ``f = h'`` at the support (no graph) and ``values`` the
    decoded ``h`` there, differentiable in ``W_enc``, ``b_enc`` and ``b_dec``. The support's
    entries are grouped by ascending row, in no particular latent order within a row.
    """

    centred: torch.Tensor
    hidden_pre: torch.Tensor
    norms: torch.Tensor | None
    support: Support
    activations: torch.Tensor
    values: torch.Tensor


def takes_support_route(sae: TrainingSAE[Any], step_input: TrainStepInput) -> bool:
    """Whether the step runs over its support: a ``[N, d_in]`` batch, a sparse enough ``k``, and the core's conditions.

    The selection's density is ``k / d_sae`` by construction, so no count decides it.
    """
    k, d_sae = sae.cfg.k, sae.cfg.d_sae
    return (
        step_input.sae_in.dim() == 2
        and k <= SPARSE_TRAINING_MAX_DENSITY * d_sae
        and support_route_possible(sae, step_input, density_known=True)
    )


def select_support(
    sae: TrainingSAE[Any], step_input: TrainStepInput, start: SearchStart
) -> tuple[SupportSelection, SearchStart]:
    """The batch selection of ``step_input`` at its support, and where the next batch's search starts.

    The next batch's bound is ``CUTOFF_MARGIN`` times this batch's cut-off, and its width
    ``CANDIDATE_MARGIN`` times the most entries one row kept here.
    """
    cfg = sae.cfg
    x = sae.normalize_in(sae.hook_sae_input(step_input.sae_in.to(sae.dtype)))
    norms = sae.W_dec.detach().norm(dim=-1) if cfg.rescale_acts_by_decoder_norm else None
    params = (sae.W_enc, sae.b_enc, sae.b_dec)
    centred, hidden_pre = encoder_scores(x, *params, norms, cfg.apply_b_dec_to_input)
    kept = None
    if start.bound is not None and hidden_pre.device.type == "cpu":  # where the bounded listing was measured
        kept = batch_topk_entries_not_below(hidden_pre, cfg.k, entries_not_below, start.bound)
    if kept is None:
        kept = batch_topk_entries(hidden_pre, cfg.k, row_topk, start.width)
    support = Support.of_entries(kept.rows, kept.latents, hidden_pre.shape[0], cfg.d_sae, kept.positions)
    with torch.no_grad():
        unscaled = kept.scores.clone() if norms is None else kept.scores / norms[kept.latents]
    values = preactivations_at_support(unscaled, support, centred, *params, cfg.apply_b_dec_to_input)
    selection = SupportSelection(centred, hidden_pre, norms, support, kept.scores, values)
    bound = CUTOFF_MARGIN * kept.cutoff if kept.cutoff > 0 else None
    return selection, SearchStart(math.ceil(CANDIDATE_MARGIN * kept.busiest_row), bound)


def support_step_output(
    step_input: TrainStepInput,
    selection: SupportSelection,
    sae_out: torch.Tensor,
    aux_losses: dict[str, torch.Tensor],
) -> TrainStepOutput:
    """The step's output, as the dense step reports it: the MSE first, then ``aux_losses``.

    The activations are dense on logging steps (the metrics read them) and a sparse COO
    tensor (unique entries, not sorted within a row) otherwise, which saves the zero-fill
    of an ``[N, d_sae]`` tensor; the trainer counts firing latents from ``firing_counts``.
    """
    support = selection.support
    shape = (support.n_rows, support.d_sae)
    if step_input.is_logging_step:
        feature_acts = selection.activations.new_zeros(shape).view(-1)
        feature_acts[support.positions] = selection.activations
        feature_acts = feature_acts.view(shape)
    else:
        coords = torch.stack([support.rows, support.latents])
        feature_acts = torch.sparse_coo_tensor(
            coords, selection.activations, shape, is_coalesced=False, check_invariants=False
        )
    return training_step_output(
        step_input, sae_out, feature_acts, selection.hidden_pre, aux_losses, support.firing_counts()
    )
