"""What every way of running SAEs inside a model shares: the spliced SAE and the SAELens attach API.

A ``SplicedSAE`` runs one SAE on the activation passing one place in a model and says what is
wrong, naming the SAE, when the activation does not fit it. A transcoder (a coder whose config
``PREDICTS_TARGET``) reads at one place and writes at another: the site captures the activation at
its input hook and replaces the one at its output hook (``cfg.metadata.hook_name_out``) with the
prediction, plus, with ``use_error_term``, the model's activation there minus the prediction.
``SAESplicingMixin`` gives a TransformerLens model SAELens's methods (``add_sae``, ``reset_saes``, ``saes``,
``run_with_saes``, ``run_with_cache_with_saes``, ``run_with_hooks_with_saes``) over four
model-specific steps: which hooks exist, how wide one is, and how a ``SplicedSAE`` is installed and
removed. ``HookedSAETransformer`` (TransformerLens 3) and ``SAETransformerBridge``
(TransformerLens 4) are that mixin on their model class; ``splice`` uses ``SplicedSAE`` alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from saecore.errors import UnknownNameError
from saecore.sae import SAE
from saecore_source_llm.sae_description import describe_sae

SAEs = SAE[Any] | Sequence[SAE[Any]]
HookList = Sequence[tuple[str | Callable[[str], bool], Callable[..., Any]]]


def sae_input_hook(sae: SAE[Any]) -> str:
    """Where an SAE reads its input in a TransformerLens model: ``cfg.metadata.hook_name``."""
    hook_name = sae.cfg.metadata.hook_name
    if not hook_name:
        raise ValueError(f"{describe_sae(sae)} has no cfg.metadata.hook_name; set it to the hook to attach at")
    return hook_name


def sae_output_hook(sae: SAE[Any]) -> str:
    """Where an SAE writes its output: its input hook, or ``cfg.metadata.hook_name_out`` for a transcoder."""
    if not sae.cfg.PREDICTS_TARGET:
        return sae_input_hook(sae)
    hook_name_out = sae.cfg.metadata.hook_name_out
    if not hook_name_out:
        raise ValueError(f"{describe_sae(sae)} is a transcoder with no cfg.metadata.hook_name_out; set it to the "
                         "hook whose activation it predicts (an MLP's output, say)")
    return hook_name_out


def sae_width(sae: SAE[Any], activation_shape: Sequence[int]) -> int:
    """The width the SAE reads from an activation: the last dimension, or heads × d_head for ``hook_z`` SAEs."""
    return activation_shape[-2] * activation_shape[-1] if sae.reshape_hook_z else activation_shape[-1]


def check_width(sae: SAE[Any], width: int, place: str, module_output: bool = False, output: bool = False) -> None:
    """Refuse an SAE whose ``d_in`` (``d_out`` at a transcoder's ``output`` place) is not the ``width`` of the
    activation at ``place`` (a hook, or a module)."""
    field, expected = ("d_out", sae.cfg.d_target) if output else ("d_in", sae.cfg.d_in)
    if width != expected:
        where = f"{place} outputs width {width} but the SAE spliced there" if module_output else \
            f"{place} has width {width} but the SAE attached there"
        raise ValueError(f"{where} ({describe_sae(sae)}) has {field}={expected}")


def unknown_name_error(message: str, name: str, known: Sequence[str], listing: str) -> UnknownNameError:
    """``message`` about a hook or module ``name`` the model lacks, ending with the closest names it has."""
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"; close matches: {', '.join(close)}" if close else f"; {listing} lists the names"
    return UnknownNameError(f"{message}{hint}")


class SplicedSAE(nn.Module):
    """One SAE running at one place in a model; it replaces the activation there with the SAE's output.

    A transcoder's site has two places: ``hook_name``, where ``capture`` records its input, and
    ``output_name``, where ``forward`` replaces the model's activation with the prediction (an
    SAE's site has ``output_name == hook_name``). Its hook points are named after ``output_name``,
    as SAELens names them.

    ``use_error_term`` is the site's own setting, switched onto the SAE for each pass so the same
    SAE may sit elsewhere with another. ``module_output`` says the place is a module's output
    (``splice``) rather than a hook point, which is how errors name it. The site's children are
    the SAE's hook points, so a model that holds the site as a submodule names them
    ``<hook>.hook_sae_*``; the SAE itself stays outside the module tree, so the model's
    ``parameters()`` and ``to()`` leave it alone.
    """

    def __init__(self, sae: SAE[Any], hook_name: str, use_error_term: bool, module_output: bool = False,
                 output_name: str | None = None) -> None:
        super().__init__()
        self.__dict__["_sae"] = sae
        self.hook_name = hook_name
        self.output_name = hook_name if output_name is None else output_name
        self._captured_input: torch.Tensor | None = None
        self.use_error_term = use_error_term
        self.module_output = module_output
        for name, point in sae.hook_dict.items():
            self.add_module(name, point)

    @property
    def sae(self) -> SAE[Any]:
        sae: SAE[Any] = self.__dict__["_sae"]
        return sae

    @property
    def reads_elsewhere(self) -> bool:
        """Whether the site reads at another place than it writes (a transcoder's site)."""
        return self.output_name != self.hook_name

    def capture(self, activation: torch.Tensor) -> torch.Tensor:
        """Record a transcoder's input at ``hook_name`` for the coming output place; pass it on unchanged."""
        self._captured_input = activation
        return activation

    def forward(self, activation: torch.Tensor) -> torch.Tensor:
        """The SAE's output for ``activation``, the model's activation at ``output_name``.

        This runs on every forward pass, so it reads the decoder's placement rather than the
        config's, and switches the SAE's error term only when the site's setting differs.
        """
        sae = self.sae
        if self.reads_elsewhere:
            return self._predict(activation)
        self._check_activation(activation, self.hook_name)
        own_setting = sae.use_error_term
        if own_setting == self.use_error_term:
            output: torch.Tensor = sae(activation)
            return output
        sae.use_error_term = self.use_error_term
        try:
            output = sae(activation)
            return output
        finally:
            sae.use_error_term = own_setting

    def _check_activation(self, activation: torch.Tensor, place: str, output: bool = False) -> None:
        sae = self.sae
        width = activation.shape[-1] if output else sae_width(sae, activation.shape)
        check_width(sae, width, place, self.module_output, output)
        decoder = sae.W_dec
        if activation.dtype != decoder.dtype or activation.device != decoder.device:
            verb = "outputs" if self.module_output else "carries"
            raise ValueError(f"{describe_sae(sae)} is on {sae.device}/{sae.dtype} but {place} {verb} "
                             f"{activation.device}/{activation.dtype} activations; move it first: "
                             f"sae.to({str(activation.device)!r}, {activation.dtype})")

    def _predict(self, target: torch.Tensor) -> torch.Tensor:
        """A transcoder's prediction from the captured input, in place of ``target``, the model's activation.

        The error term is ``target`` minus the prediction recomputed without the SAE's hooks, so edits
        made through the hooks (clamping a feature, say) change the output instead of being undone.
        """
        sae = self.sae
        source, self._captured_input = self._captured_input, None
        if source is None:
            raise ValueError(f"{describe_sae(sae)} writes at {self.output_name} but its input place {self.hook_name} "
                             f"did not run before it in this forward pass; a transcoder reads at a place that runs "
                             f"before the one it writes at")
        self._check_activation(source, self.hook_name)
        self._check_activation(target, self.output_name, output=True)
        if source.shape[:-1] != target.shape[:-1]:
            raise ValueError(f"{describe_sae(sae)} reads {list(source.shape)} at {self.hook_name} but "
                             f"{self.output_name} carries {list(target.shape)}; its input and output places must "
                             "hold the same positions (batch and sequence shapes)")
        prediction: torch.Tensor = sae.forward_with_activations(source)[0]
        if self.use_error_term:
            with torch.no_grad(), sae._hooks_bypassed():
                clean: torch.Tensor = sae.forward_with_activations(source)[0]
            prediction = prediction + sae.hook_sae_error(target.to(clean.dtype) - clean)
        output: torch.Tensor = sae.hook_sae_output(prediction)
        return output


class SAESplicingMixin:
    """SAELens's SAE methods for a model class that implements the four ``_``-prefixed steps below."""

    _spliced_saes: dict[str, SplicedSAE]

    def _hook_names(self) -> Sequence[str]:
        """Every hook name an SAE may attach at."""
        raise NotImplementedError

    def _hook_width(self, hook_name: str, sae: SAE[Any]) -> int | None:
        """The width ``sae`` would read at ``hook_name``, where the model's config tells it; None otherwise."""
        raise NotImplementedError

    def _install(self, site: SplicedSAE) -> None:
        """Make ``site`` run on the activation at ``site.hook_name`` and expose its hook points there."""
        raise NotImplementedError

    def _uninstall(self, site: SplicedSAE) -> None:
        """Undo ``_install``: the model runs as before and the SAE's hook points get their own names back."""
        raise NotImplementedError

    def _placement(self) -> tuple[torch.device, torch.dtype]:
        parameter: torch.Tensor = next(self.parameters())  # type: ignore[attr-defined]
        return parameter.device, parameter.dtype

    @property
    def acts_to_saes(self) -> dict[str, SAE[Any]]:
        """The attached SAEs by hook name."""
        return {name: site.sae for name, site in self._spliced_saes.items()}

    @property
    def spliced_saes(self) -> dict[str, SplicedSAE]:
        """The attached ``SplicedSAE`` objects by hook name (what the feature tools work through)."""
        return self._spliced_saes

    def add_sae(self, sae: SAE[Any], use_error_term: bool | None = None) -> None:
        """Attach ``sae`` at ``sae.cfg.metadata.hook_name`` until ``reset_saes``.

        A transcoder reads there and writes at ``cfg.metadata.hook_name_out``; it is still known by
        its input hook (``acts_to_saes``, ``reset_saes``), and its hook points by its output hook.
        ``use_error_term=None`` keeps the SAE's own ``use_error_term``. Re-adding the SAE already at
        that hook updates its setting; another SAE there is an error (reset that hook first).
        """
        hook_name = sae_input_hook(sae)
        current = self._spliced_saes.get(hook_name)
        if current is not None and current.sae is not sae:
            raise ValueError(f"{hook_name} already holds {describe_sae(current.sae)}; call "
                             f"reset_saes({hook_name!r}) before adding {describe_sae(sae)}")
        error_term = sae.use_error_term if use_error_term is None else use_error_term
        if current is not None:
            current.use_error_term = error_term
            return
        output_name = sae_output_hook(sae)
        for site in self._spliced_saes.values():
            if output_name in (site.hook_name, site.output_name):
                raise ValueError(f"{output_name} already holds {describe_sae(site.sae)} (attached at "
                                 f"{site.hook_name}); call reset_saes({site.hook_name!r}) before adding "
                                 f"{describe_sae(sae)}, which writes there")
        self._check_fit(sae, hook_name)
        if output_name != hook_name:
            self._check_output_fit(sae, output_name)
        site = SplicedSAE(sae, hook_name, error_term, output_name=output_name)
        self._install(site)
        self._spliced_saes[hook_name] = site

    def _check_fit(self, sae: SAE[Any], hook_name: str) -> None:
        self._check_hook_exists(sae, hook_name)
        device, dtype = self._placement()
        if (sae.device, sae.dtype) != (device, dtype):
            raise ValueError(f"{describe_sae(sae)} is on {sae.device}/{sae.dtype} but the model is on "
                             f"{device}/{dtype}; move it first: sae.to(model.cfg.device, model.cfg.dtype)")
        width = self._hook_width(hook_name, sae)
        if width is not None:
            check_width(sae, width, hook_name)

    def _check_hook_exists(self, sae: SAE[Any], hook_name: str) -> None:
        names = self._hook_names()
        if hook_name not in names:
            raise unknown_name_error(f"the model has no hook named {hook_name!r} to attach {describe_sae(sae)} at",
                                     hook_name, names, "model.hook_dict")

    def _check_output_fit(self, sae: SAE[Any], output_name: str) -> None:
        """Refuse a transcoder whose output hook is missing, or narrower or wider than its ``d_out``."""
        self._check_hook_exists(sae, output_name)
        width = self._hook_width(output_name, sae)
        if width is not None:
            check_width(sae, width, output_name, output=True)

    def _detach(self, hook_name: str) -> None:
        self._uninstall(self._spliced_saes.pop(hook_name))

    def reset_saes(self, act_names: str | Sequence[str] | None = None) -> None:
        """Detach the SAEs at ``act_names`` (every attached SAE when None)."""
        names = [act_names] if isinstance(act_names, str) else list(self._spliced_saes if act_names is None
                                                                    else act_names)
        for name in names:
            if name not in self._spliced_saes:
                attached = ", ".join(self._spliced_saes) or "none"
                raise UnknownNameError(f"no SAE is attached at {name!r} to reset; attached at: {attached}")
        for name in names:
            self._detach(name)

    @contextmanager
    def saes(self, saes: SAEs = (), reset_saes_end: bool = True, use_error_term: bool | None = None) -> Iterator[Any]:
        """Attach ``saes`` for the block; on exit (with ``reset_saes_end``) detach them and put back
        whatever SAEs those hooks held before, with their settings."""
        sae_list = [saes] if isinstance(saes, SAE) else list(saes)
        by_hook: dict[str, SAE[Any]] = {}
        for sae in sae_list:
            hook_name = sae_input_hook(sae)
            if hook_name in by_hook:
                raise ValueError(f"two SAEs for {hook_name}: {describe_sae(by_hook[hook_name])} and "
                                 f"{describe_sae(sae)}; one hook takes one SAE")
            by_hook[hook_name] = sae
        displaced: dict[str, SplicedSAE | None] = {}
        try:
            for hook_name, sae in by_hook.items():
                displaced[hook_name] = self._spliced_saes.get(hook_name)
                if displaced[hook_name] is not None:
                    self._detach(hook_name)
                self.add_sae(sae, use_error_term)
            yield self
        finally:
            if reset_saes_end:
                self._restore(displaced)

    def _restore(self, displaced: dict[str, SplicedSAE | None]) -> None:
        for hook_name, previous in displaced.items():
            if hook_name in self._spliced_saes:
                self._detach(hook_name)
            if previous is not None:
                self._install(previous)
                self._spliced_saes[hook_name] = previous

    def run_with_saes(
        self, *model_args: Any, saes: SAEs = (), reset_saes_end: bool = True, use_error_term: bool | None = None,
        **model_kwargs: Any,
    ) -> Any:
        """One forward pass with ``saes`` attached."""
        with self.saes(saes, reset_saes_end, use_error_term):
            return self(*model_args, **model_kwargs)  # type: ignore[operator]

    def run_with_cache_with_saes(
        self, *model_args: Any, saes: SAEs = (), reset_saes_end: bool = True, use_error_term: bool | None = None,
        return_cache_object: bool = True, remove_batch_dim: bool = False, **kwargs: Any,
    ) -> tuple[Any, Any]:
        """``run_with_cache`` with ``saes`` attached; the cache holds their ``<hook>.hook_sae_*`` entries."""
        with self.saes(saes, reset_saes_end, use_error_term):
            return self.run_with_cache(  # type: ignore[attr-defined,no-any-return]
                *model_args, return_cache_object=return_cache_object, remove_batch_dim=remove_batch_dim, **kwargs)

    def run_with_hooks_with_saes(
        self, *model_args: Any, saes: SAEs = (), reset_saes_end: bool = True, fwd_hooks: HookList = (),
        bwd_hooks: HookList = (), reset_hooks_end: bool = True, clear_contexts: bool = False, **model_kwargs: Any,
    ) -> Any:
        """``run_with_hooks`` with ``saes`` attached: hooks may target ``<hook>.hook_sae_*`` points."""
        with self.saes(saes, reset_saes_end):
            return self.run_with_hooks(  # type: ignore[attr-defined]
                *model_args, fwd_hooks=list(fwd_hooks), bwd_hooks=list(bwd_hooks), reset_hooks_end=reset_hooks_end,
                clear_contexts=clear_contexts, **model_kwargs)
