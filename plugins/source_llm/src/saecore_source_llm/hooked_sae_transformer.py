"""``HookedSAETransformer``: a TransformerLens 3 ``HookedTransformer`` that runs SAEs at its hook points.

An attached SAE replaces the model's activation at ``sae.cfg.metadata.hook_name`` with its
reconstruction (plus the reconstruction error when ``use_error_term`` is on, which keeps the
model's output exact while the features stay computed and differentiable). The SAE's own hook
points join the model's as ``<hook>.hook_sae_input``, ``.hook_sae_acts_pre``,
``.hook_sae_acts_post``, ``.hook_sae_recons``, ``.hook_sae_error`` and ``.hook_sae_output``, so
``run_with_cache`` and ``run_with_hooks`` reach the features like any other activation.

The SAE is not a registered submodule: the model's ``parameters()``, ``state_dict()`` and ``to()``
leave it alone, and it must already sit on the model's device and dtype.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import torch
from torch import nn

from saecore.errors import UnknownNameError
from saecore.sae import SAE
from saecore_source_llm.sae_description import describe_sae

_TL_VERSION = version("transformer-lens")
if int(_TL_VERSION.split(".")[0]) >= 4:
    raise ImportError(
        f"saecore's HookedSAETransformer needs transformer-lens<4 (3.x) and transformer-lens {_TL_VERSION} is "
        "installed; the TransformerLens 4 bridge (SAETransformerBridge) is not built yet: "
        "pip install 'transformer-lens<4'"
    )

from transformer_lens import HookedTransformer  # noqa: E402 - only once the version is known to fit

SAEs = SAE[Any] | Sequence[SAE[Any]]
HookList = Sequence[tuple[str | Callable[[str], bool], Callable[..., Any]]]


class SpliceSite(nn.Module):
    """Stands where a hook point was and runs the SAE on the activation passing through.

    Its children are the SAE's hook points, so the model names them ``<hook>.hook_sae_*``; the SAE
    itself and the hook point it replaces are kept outside the module tree.
    """

    def __init__(self, sae: SAE[Any], hook_point: nn.Module, hook_name: str, use_error_term: bool) -> None:
        super().__init__()
        self.__dict__["_sae"] = sae
        self.__dict__["_replaced"] = hook_point
        self.hook_name = hook_name
        self.use_error_term = use_error_term
        for name, point in sae.hook_dict.items():
            self.add_module(name, point)

    @property
    def sae(self) -> SAE[Any]:
        sae: SAE[Any] = self.__dict__["_sae"]
        return sae

    @property
    def replaced(self) -> nn.Module:
        """The model's own hook point, put back when the SAE is detached."""
        replaced: nn.Module = self.__dict__["_replaced"]
        return replaced

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        sae = self.sae
        width = activation.shape[-2] * activation.shape[-1] if sae.reshape_hook_z else activation.shape[-1]
        if width != sae.cfg.d_in:
            raise ValueError(f"{self.hook_name} has width {width} but the SAE attached there "
                             f"({describe_sae(sae)}) has d_in={sae.cfg.d_in}")
        own_setting, sae.use_error_term = sae.use_error_term, self.use_error_term
        try:
            return sae(activation)
        finally:
            sae.use_error_term = own_setting


class HookedSAETransformer(HookedTransformer):
    """A ``HookedTransformer`` with SAEs spliced in at their hook points (SAELens's API)."""

    def __init__(self, *model_args: Any, **model_kwargs: Any) -> None:
        super().__init__(*model_args, **model_kwargs)
        self._splice_sites: dict[str, SpliceSite] = {}

    @property
    def acts_to_saes(self) -> dict[str, SAE[Any]]:
        """The attached SAEs by hook name."""
        return {name: site.sae for name, site in self._splice_sites.items()}

    def add_sae(self, sae: SAE[Any], use_error_term: bool | None = None) -> None:
        """Attach ``sae`` at ``sae.cfg.metadata.hook_name`` until ``reset_saes``.

        ``use_error_term=None`` keeps the SAE's own ``use_error_term``. Re-adding the SAE already at
        that hook updates its setting; another SAE there is an error (reset that hook first).
        """
        hook_name = sae.cfg.metadata.hook_name
        if not hook_name:
            raise ValueError(f"{describe_sae(sae)} has no cfg.metadata.hook_name; set it to the hook to attach at")
        current = self._splice_sites.get(hook_name)
        if current is not None and current.sae is not sae:
            raise ValueError(f"{hook_name} already holds {describe_sae(current.sae)}; call "
                             f"reset_saes({hook_name!r}) before adding {describe_sae(sae)}")
        if current is None and hook_name not in self.hook_dict:
            close = difflib.get_close_matches(hook_name, list(self.hook_dict), n=3)
            hint = f"; close matches: {', '.join(close)}" if close else "; see model.hook_dict for the hook names"
            raise UnknownNameError(f"the model has no hook named {hook_name!r} to attach {describe_sae(sae)} at{hint}")
        self._check_placement(sae)
        error_term = sae.use_error_term if use_error_term is None else use_error_term
        if current is not None:
            current.use_error_term = error_term
            return
        site = SpliceSite(sae, self.hook_dict[hook_name], hook_name, error_term)
        self._replace_module(hook_name, site)
        self._splice_sites[hook_name] = site
        self.setup()

    def _check_placement(self, sae: SAE[Any]) -> None:
        model_parameter = next(self.parameters())
        if (sae.device, sae.dtype) != (model_parameter.device, model_parameter.dtype):
            raise ValueError(
                f"{describe_sae(sae)} is on {sae.device}/{sae.dtype} but the model is on "
                f"{model_parameter.device}/{model_parameter.dtype}; move it first: "
                "sae.to(model.cfg.device, model.cfg.dtype)"
            )

    def _replace_module(self, hook_name: str, module: nn.Module) -> None:
        parent_name, _, child_name = hook_name.rpartition(".")
        parent = self.get_submodule(parent_name) if parent_name else self
        setattr(parent, child_name, module)

    def _detach(self, hook_name: str) -> None:
        site = self._splice_sites.pop(hook_name)
        self._replace_module(hook_name, site.replaced)
        site.sae.name_hook_points()
        self.setup()

    def reset_saes(self, act_names: str | Sequence[str] | None = None) -> None:
        """Detach the SAEs at ``act_names`` (every attached SAE when None)."""
        names = [act_names] if isinstance(act_names, str) else list(self._splice_sites if act_names is None
                                                                    else act_names)
        for name in names:
            if name not in self._splice_sites:
                attached = ", ".join(self._splice_sites) or "none"
                raise UnknownNameError(f"no SAE is attached at {name!r} to reset; attached at: {attached}")
        for name in names:
            self._detach(name)

    @contextmanager
    def saes(
        self, saes: SAEs = (), reset_saes_end: bool = True, use_error_term: bool | None = None
    ) -> Iterator[HookedSAETransformer]:
        """Attach ``saes`` for the block; on exit (with ``reset_saes_end``) detach them and put back
        whatever SAEs those hooks held before, with their settings."""
        sae_list = [saes] if isinstance(saes, SAE) else list(saes)
        by_hook: dict[str, SAE[Any]] = {}
        for sae in sae_list:
            hook_name = sae.cfg.metadata.hook_name
            if hook_name in by_hook:
                raise ValueError(f"two SAEs for {hook_name}: {describe_sae(by_hook[hook_name])} and "
                                 f"{describe_sae(sae)}; one hook takes one SAE")
            by_hook[hook_name] = sae
        displaced: dict[str, SpliceSite | None] = {}
        try:
            for hook_name, sae in by_hook.items():
                displaced[hook_name] = self._splice_sites.get(hook_name)
                if displaced[hook_name] is not None:
                    self._detach(hook_name)
                self.add_sae(sae, use_error_term)
            yield self
        finally:
            if reset_saes_end:
                self._restore(displaced)

    def _restore(self, displaced: dict[str, SpliceSite | None]) -> None:
        for hook_name, previous in displaced.items():
            if hook_name in self._splice_sites:
                self._detach(hook_name)
            if previous is not None:
                self._replace_module(hook_name, previous)
                self._splice_sites[hook_name] = previous
                self.setup()

    def run_with_saes(
        self, *model_args: Any, saes: SAEs = (), reset_saes_end: bool = True, use_error_term: bool | None = None,
        **model_kwargs: Any,
    ) -> Any:
        """One forward pass with ``saes`` attached."""
        with self.saes(saes, reset_saes_end, use_error_term):
            return self(*model_args, **model_kwargs)

    def run_with_cache_with_saes(
        self, *model_args: Any, saes: SAEs = (), reset_saes_end: bool = True, use_error_term: bool | None = None,
        return_cache_object: bool = True, remove_batch_dim: bool = False, **kwargs: Any,
    ) -> tuple[Any, Any]:
        """``run_with_cache`` with ``saes`` attached; the cache holds their ``<hook>.hook_sae_*`` entries."""
        with self.saes(saes, reset_saes_end, use_error_term):
            return self.run_with_cache(*model_args, return_cache_object=return_cache_object,
                                       remove_batch_dim=remove_batch_dim, **kwargs)

    def run_with_hooks_with_saes(
        self, *model_args: Any, saes: SAEs = (), reset_saes_end: bool = True, fwd_hooks: HookList = (),
        bwd_hooks: HookList = (), reset_hooks_end: bool = True, clear_contexts: bool = False, **model_kwargs: Any,
    ) -> Any:
        """``run_with_hooks`` with ``saes`` attached: hooks may target ``<hook>.hook_sae_*`` points."""
        with self.saes(saes, reset_saes_end):
            return self.run_with_hooks(*model_args, fwd_hooks=list(fwd_hooks), bwd_hooks=list(bwd_hooks),
                                       reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts,
                                       **model_kwargs)

