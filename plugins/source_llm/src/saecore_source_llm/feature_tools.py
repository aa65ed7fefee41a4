"""Feature tools for a model with an SAE in it: steer, ablate or clamp, top-k, attribution.

The model is a ``HookedSAETransformer`` or an ``SAETransformerBridge`` with SAEs attached
(``model.add_sae(sae)``, ``with model.saes(saes=[sae]):``), or any torch model, such as a Hugging
Face one, inside ``with splice(model, {module name: sae}):``. All of them hold each SAE in a
``SplicedSAE``; the tools find it by its hook or module name (``hook_name``, which may be
left out while exactly one SAE is in the model), switch its error term, and hook the SAE's own
hook points, so one implementation serves every model kind and every SAE architecture.

The editing tools (``steer_feature``, ``clamp_features``, ``ablate_features``) are context managers
that switch the SAE's error term on for their block (``use_error_term=True``, the default): the
model then sees its own activation plus exactly the edit, not the SAE's reconstruction error too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from saecore.errors import UnknownNameError
from saecore.sae import SAE
from saecore_source_llm.hf_splice import spliced_saes
from saecore_source_llm.sae_splicing import SAESplicingMixin, SplicedSAE

Statistic = Literal["mean", "max"]
ActivationEdit = Callable[[torch.Tensor], "torch.Tensor | None"]


class TopKFeatures(NamedTuple):
    """The strongest features of each token, strongest first."""

    values: torch.Tensor
    """Their activations, ``[batch, pos, k]``."""
    indices: torch.Tensor
    """Their feature indices, ``[batch, pos, k]``."""


def attached_sae(model: nn.Module, hook_name: str | None = None) -> SplicedSAE:
    """The site of the SAE the tools work on: the one at ``hook_name``, or the only one in the model."""
    sites = model.spliced_saes if isinstance(model, SAESplicingMixin) else spliced_saes(model)
    listed = ", ".join(sites) or ("none (attach one with model.add_sae(sae) or model.saes(saes=[sae]), or splice "
                                  "one into a torch model with splice(model, {module_name: sae}))")
    if hook_name is None:
        if len(sites) != 1:
            raise UnknownNameError(f"pass hook_name to say which SAE to use; SAEs attached at: {listed}")
        return next(iter(sites.values()))
    if hook_name not in sites:
        raise UnknownNameError(f"no SAE is attached at {hook_name!r}; SAEs attached at: {listed}")
    return sites[hook_name]


def _checked_features(features: int | Sequence[int], sae: SAE[Any], hook_name: str) -> list[int]:
    feature_list = [features] if isinstance(features, int) else list(features)
    for feature in feature_list:
        if not 0 <= feature < sae.cfg.d_sae:
            raise IndexError(f"feature {feature} is out of range for the SAE at {hook_name} "
                             f"(d_sae={sae.cfg.d_sae}; features are 0..{sae.cfg.d_sae - 1})")
    return feature_list


@contextmanager
def _error_term(site: SplicedSAE, use_error_term: bool) -> Iterator[None]:
    """Run the site with ``use_error_term`` for the block, then put its own setting back."""
    own_setting, site.use_error_term = site.use_error_term, use_error_term
    try:
        yield
    finally:
        site.use_error_term = own_setting


@contextmanager
def _on_sae_point(site: SplicedSAE, point: str, edit: ActivationEdit) -> Iterator[None]:
    """Call ``edit`` on the SAE's ``point`` activation in every pass of the block; a returned tensor replaces it.

    A plain torch hook: a model's ``reset_hooks`` inside the block leaves it alone.
    """
    handle = site.sae.hook_dict[point].register_forward_hook(lambda module, inputs, output: edit(output))
    try:
        yield
    finally:
        handle.remove()


def _logits(output: Any) -> torch.Tensor:
    """The logits of a forward pass: TransformerLens returns them, Hugging Face returns them in ``.logits``."""
    logits: torch.Tensor = output.logits if hasattr(output, "logits") else output
    return logits


@torch.no_grad()
def feature_activations(
    model: nn.Module, tokens: torch.Tensor, hook_name: str | None = None, **forward_kwargs: Any
) -> torch.Tensor:
    """The SAE's feature activations (``hook_sae_acts_post``) on ``tokens``: ``[batch, pos, d_sae]``."""
    site = attached_sae(model, hook_name)
    captured: list[torch.Tensor] = []
    with _on_sae_point(site, "hook_sae_acts_post", lambda acts: captured.append(acts)):
        model(tokens, **forward_kwargs)
    if not captured:
        raise ValueError(f"the forward pass never reached the SAE at {site.hook_name}; check forward_kwargs "
                         "(for example stop_at_layer) that end the pass before it")
    return captured[-1]


def top_k_features(
    model: nn.Module, tokens: torch.Tensor, k: int, hook_name: str | None = None, **forward_kwargs: Any
) -> TopKFeatures:
    """The ``k`` most active features of every token, with their activations; zeros tie in ``torch.topk``'s order."""
    site = attached_sae(model, hook_name)
    if not 1 <= k <= site.sae.cfg.d_sae:
        raise ValueError(f"k={k} must be between 1 and the SAE's d_sae={site.sae.cfg.d_sae} "
                         f"(the SAE at {site.hook_name})")
    values, indices = feature_activations(model, tokens, site.hook_name, **forward_kwargs).topk(k, dim=-1)
    return TopKFeatures(values, indices)


def feature_activation_scale(
    model: nn.Module, tokens: torch.Tensor, feature: int, hook_name: str | None = None,
    statistic: Statistic = "max", **forward_kwargs: Any,
) -> float:
    """A feature's typical activation: the mean or the max of its nonzero activations over ``tokens``.

    Zeros are left out because a sparse feature is off on most tokens; averaging them in would
    measure how often it fires, not how strongly.
    """
    if statistic not in ("mean", "max"):
        raise ValueError(f"statistic={statistic!r} is not one of 'mean', 'max'")
    site = attached_sae(model, hook_name)
    hook_name = site.hook_name
    (feature,) = _checked_features(feature, site.sae, hook_name)
    acts = feature_activations(model, tokens, hook_name, **forward_kwargs)[..., feature]
    fired = acts[acts != 0]
    if fired.numel() == 0:
        raise ValueError(f"feature {feature} of the SAE at {hook_name} is zero on all {acts.numel()} given tokens; "
                         "pass scale= explicitly or give tokens on which it fires")
    return float(fired.mean() if statistic == "mean" else fired.max())


@contextmanager
def steer_feature(
    model: nn.Module, feature: int, strength: float, hook_name: str | None = None, *,
    scale: float | None = None, scale_tokens: torch.Tensor | None = None, scale_statistic: Statistic = "max",
    use_error_term: bool = True,
) -> Iterator[float]:
    """Add ``strength * scale * W_dec[feature]`` to the SAE's output at every position for the block.

    ``scale`` puts ``strength`` in units of the feature's typical activation. Give it explicitly,
    or give ``scale_tokens`` to estimate it there with ``feature_activation_scale`` (the
    ``scale_statistic``, by default the max, of the feature's nonzero activations); with neither,
    ``scale`` is 1 and ``strength`` is in raw activation units. The step is added to the SAE's
    reconstruction before it undoes any input normalisation, which for a decoder linear in the
    features is the same as raising the feature's activation by ``strength * scale``. Yields the
    scale used.
    """
    site = attached_sae(model, hook_name)
    (feature,) = _checked_features(feature, site.sae, site.hook_name)
    if scale is not None and scale_tokens is not None:
        raise ValueError("give steer_feature either scale= or scale_tokens= (to estimate the scale), not both")
    if scale is None:
        scale = 1.0 if scale_tokens is None else feature_activation_scale(model, scale_tokens, feature,
                                                                          site.hook_name, scale_statistic)
    step = strength * scale * site.sae.W_dec[feature].detach()
    with _error_term(site, use_error_term), _on_sae_point(site, "hook_sae_recons", lambda recons: recons + step):
        yield scale


@contextmanager
def clamp_features(
    model: nn.Module, features: int | Sequence[int], value: float | Sequence[float],
    hook_name: str | None = None, *, use_error_term: bool = True,
) -> Iterator[None]:
    """Set ``features`` to ``value`` (one value, or one per feature) at ``hook_sae_acts_post`` for the block.

    With the error term on (the default) the model's activation changes by exactly the decoded
    change of those features; every other feature and the reconstruction error stay as they were.
    """
    site = attached_sae(model, hook_name)
    sae = site.sae
    feature_list = _checked_features(features, sae, site.hook_name)
    values = [float(value)] * len(feature_list) if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != len(feature_list):
        raise ValueError(f"clamp_features got {len(values)} values for {len(feature_list)} features; "
                         "give one value, or one per feature")
    index = torch.tensor(feature_list, device=sae.device)
    targets = torch.tensor(values, dtype=sae.dtype, device=sae.device)

    def clamp(acts: torch.Tensor) -> torch.Tensor:
        return acts.index_copy(-1, index, targets.expand(*acts.shape[:-1], len(feature_list)))

    with _error_term(site, use_error_term), _on_sae_point(site, "hook_sae_acts_post", clamp):
        yield


@contextmanager
def ablate_features(
    model: nn.Module, features: int | Sequence[int], hook_name: str | None = None, *,
    use_error_term: bool = True,
) -> Iterator[None]:
    """Zero ``features`` for the block: ``clamp_features`` with value 0."""
    with clamp_features(model, features, 0.0, hook_name, use_error_term=use_error_term):
        yield


def feature_attribution(
    model: nn.Module, tokens: torch.Tensor, metric: Callable[[torch.Tensor], torch.Tensor],
    hook_name: str | None = None, *, reduce: Literal["none", "sum"] = "none", **forward_kwargs: Any,
) -> torch.Tensor:
    """Each feature's first-order share of ``metric(logits)``: activation × d metric / d activation.

    The SAE runs with its error term, so the logits are the model's own and the gradient flows to
    the features through the decoder with the reconstruction error held fixed. ``reduce="none"``
    returns ``[batch, pos, d_sae]``; ``"sum"`` sums over batch and positions to ``[d_sae]``.
    Summed over all features and tokens, the attribution is the first-order estimate of how much
    the metric falls when every feature is zeroed.
    """
    site = attached_sae(model, hook_name)
    captured: list[torch.Tensor] = []

    def capture(acts: torch.Tensor) -> torch.Tensor:
        leaf = acts.detach().requires_grad_(True)
        captured.append(leaf)
        return leaf

    with torch.enable_grad(), _error_term(site, True), _on_sae_point(site, "hook_sae_acts_post", capture):
        value = metric(_logits(model(tokens, **forward_kwargs)))
        if value.numel() != 1:
            raise ValueError(f"the metric must return a scalar; it returned shape {tuple(value.shape)} "
                             "(reduce it, for example with .mean())")
        (grad,) = torch.autograd.grad(value.reshape(()), captured)
    attribution = captured[0].detach() * grad
    return attribution.sum(dim=tuple(range(attribution.ndim - 1))) if reduce == "sum" else attribution
