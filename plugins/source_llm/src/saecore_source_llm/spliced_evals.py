"""How much of the model's behaviour survives when the SAE replaces the hook's activations.

The language model runs three times on the same eval prompts: clean, with the hook's
activations replaced by the SAE's reconstruction, and with them replaced by zeros. The
definitions are SAELens's (``get_downstream_reconstruction_metrics``):

* ``ce_loss_without_sae``, ``ce_loss_with_sae``, ``ce_loss_with_ablation``: mean
  next-token cross-entropy (position ``t`` predicts token ``t + 1``) of the three runs;
* ``ce_loss_score = (CE_zero − CE_sae) / (CE_zero − CE_clean)``: 1 when the SAE loses
  nothing the model uses, 0 when splicing it in is as bad as deleting the activations;
* ``kl_div_with_sae``, ``kl_div_with_ablation``: mean over positions of
  ``KL(clean ‖ spliced)`` over the vocabulary; ``kl_div_score = (KL_zero − KL_sae) / KL_zero``.

A transcoder (``SpliceSite.output_hook`` set) is evaluated by replacement: the activation at
``output_hook`` (an MLP's output) is replaced by the transcoder's prediction from the activation
at ``hook_name`` (the MLP's input), and the zero ablation zeroes ``output_hook``.

Which positions: the SAE only ever saw positions inside ``seqpos_slice`` whose token is
not special, so only those are replaced, and only those enter the averages (a position
``t`` counts when its own token qualifies, as in SAELens). Special tokens are the
tokenizer's BOS/EOS/PAD/SEP plus any ids listed in ``exclude_special_tokens``; their
activations (BOS's above all) are outliers no SAE is meant to reconstruct.

**Deviation from SAELens 6.54:** SAELens zero-ablates every position, special tokens
included, while it splices the SAE in only at the others, so its zero baseline also pays
for deleting BOS. Here the ablation replaces exactly the positions the SAE replaces, and
the score compares like with like.

Per-position values are float32 computed from logit differences (see :func:`divergences`);
sums across positions and batches are float64.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from saecore.errors import ConfigError
from saecore_source_llm.hooked_model import Edit, HookedModel

METRIC_NAMES = (
    "ce_loss_score",
    "ce_loss_with_sae",
    "ce_loss_without_sae",
    "ce_loss_with_ablation",
    "kl_div_score",
    "kl_div_with_sae",
    "kl_div_with_ablation",
)


@dataclass(frozen=True)
class SpliceSite:
    """Where the SAE goes: the hook, and for per-head hooks ``[batch, pos, heads, d_head]`` which head.

    A transcoder's site reads at ``hook_name`` and writes at ``output_hook``.
    """

    hook_name: str
    head_index: int | None = None
    output_hook: str | None = None


def evaluated_positions(
    tokens: torch.Tensor, excluded_tokens: torch.Tensor | None, seqpos_slice: tuple[int | None, ...]
) -> torch.Tensor:
    """``[prompts, pos]`` bool: the positions that are replaced and averaged over."""
    in_slice = torch.zeros(tokens.shape[1], dtype=torch.bool)
    in_slice[slice(*seqpos_slice)] = True
    keep = in_slice.expand_as(tokens).clone()
    if excluded_tokens is not None and len(excluded_tokens):
        keep &= ~torch.isin(tokens, excluded_tokens)
    return keep


def sae_reconstruction(sae: Any, scaling_factor: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x ↦ sae(s·x)/s`` on the SAE's device, returned on ``x``'s device."""

    def reconstruct(x: torch.Tensor) -> torch.Tensor:
        sae_in = x.to(sae.device)
        if scaling_factor is not None:
            sae_in = sae_in * scaling_factor
        out = sae.decode(sae.encode(sae_in))
        if scaling_factor is not None:
            out = out / scaling_factor
        return out.to(x.device)

    return reconstruct


def transcoder_prediction(sae: Any, scaling_factor: float | None,
                          target_scaling_factor: float | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x ↦ sae(s·x)/t`` on the transcoder's device, returned on ``x``'s device (``t`` defaults to ``s``)."""
    output_scale = scaling_factor if target_scaling_factor is None else target_scaling_factor

    def predict(x: torch.Tensor) -> torch.Tensor:
        sae_in = x.to(sae.device)
        if scaling_factor is not None:
            sae_in = sae_in * scaling_factor
        out: torch.Tensor = sae.forward_with_activations(sae_in)[0]
        if output_scale is not None:
            out = out / output_scale
        return out.to(x.device)

    return predict


def replacing_from_input(
    site: SpliceSite, keep: torch.Tensor, predict: Callable[[torch.Tensor], torch.Tensor]
) -> list[tuple[str, Edit]]:
    """The two hook edits of a transcoder: keep the input at ``hook_name``, replace ``output_hook`` at ``keep``."""
    if site.output_hook is None:
        raise ValueError(f"the splice site at {site.hook_name} has no output_hook; a transcoder writes at one")
    inputs: list[torch.Tensor] = []

    def keep_input(activation: torch.Tensor) -> torch.Tensor:
        inputs.append(activation)
        return activation

    def replace(activation: torch.Tensor) -> torch.Tensor:
        mask = keep.to(activation.device).reshape(*keep.shape, *([1] * (activation.ndim - 2)))
        return torch.where(mask, predict(inputs.pop()).to(activation.dtype), activation)

    return [(site.hook_name, keep_input), (site.output_hook, replace)]


def zeros(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(x)


def replacing(
    site: SpliceSite, keep: torch.Tensor, new_values: Callable[[torch.Tensor], torch.Tensor], *, sae_takes_heads: bool
) -> Edit:
    """A hook edit that swaps the activations at the ``keep`` positions for ``new_values`` of them.

    Per-head activations are flattened to ``heads·d_head`` (as the source serves them)
    unless the SAE reshapes hook_z inputs itself; with ``head_index`` only that head changes.
    """

    def edit(activation: torch.Tensor) -> torch.Tensor:
        per_head = activation.ndim == 4
        if per_head and site.head_index is not None:
            x = activation[:, :, site.head_index]
        elif per_head and not sae_takes_heads:
            x = activation.flatten(2)
        else:
            x = activation
        mask = keep.to(x.device).reshape(*keep.shape, *([1] * (x.ndim - 2)))
        replaced = torch.where(mask, new_values(x).to(x.dtype), x)
        if per_head and site.head_index is not None:
            result = activation.clone()
            result[:, :, site.head_index] = replaced
            return result
        return replaced.reshape(activation.shape)

    return edit


CHUNK_ELEMENTS = 1 << 24
"""Logits processed at once (64 MB in float32), so memory stays flat at any vocabulary size."""


def next_token_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[prompts, pos]`` cross-entropy of each position's prediction of the next token (last: 0)."""
    losses = torch.zeros(tokens.shape, dtype=torch.float64)
    targets = tokens[:, 1:].to(logits.device)
    for rows in _row_chunks(logits):
        z = logits[rows, :-1].float()
        picked = z.gather(-1, targets[rows, :, None]).squeeze(-1)
        losses[rows, :-1] = (torch.logsumexp(z, dim=-1) - picked).double().cpu()
    return losses


def divergences(clean_logits: torch.Tensor, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``[2, prompts, pos]`` float64: the CE increase over the clean run (last position 0), and KL(clean ‖ spliced).

    Both are differences of nearly equal numbers when the SAE is good, so they are
    computed from the logit difference ``d = z_clean − z_spliced`` rather than from two
    log-softmaxes (whose float32 rounding, relative to log-probabilities of size ~10,
    would swamp a KL of 1e-3). With ``p`` the clean distribution, ``m = Σ p·d`` and
    ``d' = d − m``, ``S = Σ p·expm1(−d')`` is small and exact to float32 precision:

    * ``KL = Σ p·(d − (lse_clean − lse_spliced)) = Σ p·d' + log1p(S)``;
    * ``CE_spliced − CE_clean = d[target] − m + log1p(S)``.
    """
    result = torch.zeros(2, *tokens.shape, dtype=torch.float64)
    targets = tokens[:, 1:].to(logits.device)
    for rows in _row_chunks(logits):
        clean = clean_logits[rows].float()
        d = clean - logits[rows].float()
        p = torch.softmax(clean, dim=-1)
        del clean
        m = (p * d).sum(-1, keepdim=True)
        d -= m
        log1p_s = torch.log1p((p * torch.expm1(-d)).sum(-1))
        kl = (p * d).sum(-1) + log1p_s
        target_d = d[:, :-1].gather(-1, targets[rows, :, None]).squeeze(-1)  # d'[target] = d[target] − m
        result[0, rows, :-1] = (target_d + log1p_s[:, :-1]).double().cpu()
        result[1, rows] = kl.double().cpu()
    return result


def prompts_per_forward(batch_size: int, positions: int, vocab_size: int | None) -> int:
    """Prompts per model pass: at most ``batch_size``, few enough that one logits tensor fits :data:`CHUNK_ELEMENTS`.

    Two logits tensors (the clean run's and a spliced run's) are alive at once, and at a
    GPT-2-sized vocabulary a batch of 8 prompts of 128 tokens gives 206 MB each: the
    evaluation, not the training, would set the run's peak memory. The metrics are sums over
    positions, so the grouping does not change them. With the vocabulary unknown, ``batch_size``.
    """
    if vocab_size is None:
        return batch_size
    return max(1, min(batch_size, CHUNK_ELEMENTS // (positions * vocab_size)))


def _row_chunks(logits: torch.Tensor) -> list[slice]:
    per_row = logits[0].numel()
    step = max(1, CHUNK_ELEMENTS // per_row)
    return [slice(start, start + step) for start in range(0, logits.shape[0], step)]


CE_SUMS = ("ce_loss_without_sae", "ce_increase_with_sae", "ce_increase_with_ablation")
KL_SUMS = ("kl_div_with_sae", "kl_div_with_ablation")


class _Sums:
    """Float64 running sums of the per-position values over the evaluated positions."""

    def __init__(self) -> None:
        self.values = dict.fromkeys(CE_SUMS + KL_SUMS, 0.0)
        self.ce_positions = 0
        self.kl_positions = 0

    def count(self, keep: torch.Tensor) -> None:
        """Count a batch's positions: ``keep [prompts, pos]`` for KL, all but the last position for CE."""
        self.ce_positions += int(keep[:, :-1].sum())
        self.kl_positions += int(keep.sum())

    def add(self, name: str, per_position: torch.Tensor, keep: torch.Tensor) -> None:
        self.values[name] += float(per_position[keep].sum())

    def means(self) -> dict[str, float]:
        if self.ce_positions == 0:
            raise ConfigError("no eval position is left after excluding special tokens and applying seqpos_slice; "
                              "raise context_size or n_eval_batches, or change exclude_special_tokens/seqpos_slice")
        ce = {name: self.values[name] / self.ce_positions for name in CE_SUMS}
        kl = {name: self.values[name] / self.kl_positions for name in KL_SUMS}
        ce_gap, sae_gap = ce["ce_increase_with_ablation"], ce["ce_increase_with_sae"]
        kl_zero, kl_sae = kl["kl_div_with_ablation"], kl["kl_div_with_sae"]
        return {
            "ce_loss_score": (ce_gap - sae_gap) / ce_gap if ce_gap != 0 else float("nan"),
            "ce_loss_with_sae": ce["ce_loss_without_sae"] + sae_gap,
            "ce_loss_without_sae": ce["ce_loss_without_sae"],
            "ce_loss_with_ablation": ce["ce_loss_without_sae"] + ce_gap,
            "kl_div_score": (kl_zero - kl_sae) / kl_zero if kl_zero != 0 else float("nan"),
            "kl_div_with_sae": kl_sae,
            "kl_div_with_ablation": kl_zero,
        }


@torch.no_grad()
def spliced_metrics(
    model: HookedModel,
    sae: Any,
    tokens: torch.Tensor,
    keep: torch.Tensor,
    site: SpliceSite,
    *,
    scaling_factor: float | None,
    batch_size: int,
    autocast: bool = False,
    target_scaling_factor: float | None = None,
) -> dict[str, float]:
    """The seven metrics of :data:`METRIC_NAMES` over ``tokens [prompts, pos]``, averaged over ``keep``.

    ``target_scaling_factor`` is a transcoder's output scale while it is not folded in.
    """
    was_training = sae.training
    sae.eval()
    reconstruct = sae_reconstruction(sae, scaling_factor)
    predict = transcoder_prediction(sae, scaling_factor, target_scaling_factor)
    sae_takes_heads = getattr(sae, "reshape_hook_z", False)

    def edits(batch_keep: torch.Tensor, with_sae: bool) -> list[tuple[str, Edit]]:
        if site.output_hook is None:
            new_values = reconstruct if with_sae else zeros
            return [(site.hook_name, replacing(site, batch_keep, new_values, sae_takes_heads=sae_takes_heads))]
        if with_sae:
            return replacing_from_input(site, batch_keep, predict)
        return [(site.output_hook, replacing(site, batch_keep, zeros, sae_takes_heads=False))]
    sums = _Sums()
    device = model.input_device
    prompts = prompts_per_forward(batch_size, tokens.shape[1], model.vocab_size)
    try:
        for start in range(0, tokens.shape[0], prompts):
            batch = tokens[start:start + prompts]
            batch_keep = keep[start:start + prompts]
            ce_keep = batch_keep.clone()
            ce_keep[:, -1] = False  # the last position predicts nothing
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                clean = model.logits(batch.to(device))
            sums.count(batch_keep)
            sums.add("ce_loss_without_sae", next_token_losses(clean, batch), ce_keep)
            for suffix, with_sae in (("with_sae", True), ("with_ablation", False)):
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = model.logits(batch.to(device), edits(batch_keep, with_sae))
                ce_increase, kl = divergences(clean, logits, batch)
                del logits
                sums.add(f"ce_increase_{suffix}", ce_increase, ce_keep)
                sums.add(f"kl_div_{suffix}", kl, batch_keep)
    finally:
        sae.train(was_training)
    return sums.means()
