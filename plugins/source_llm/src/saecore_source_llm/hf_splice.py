"""Splice SAEs into any ``torch.nn.Module`` model, such as a Hugging Face transformer, by module name.

Hugging Face models have no hook points, but every submodule has a name (``model.named_modules()``)
and takes forward hooks. ``splice`` hooks the named modules so that the SAE's output replaces the
module's output activation for the duration of a ``with`` block: the reconstruction, or with
``use_error_term`` the reconstruction plus its error, which keeps the model's output exact while the
features stay computed and differentiable. A decoder block may return a tuple whose first element
is the hidden state; that element is the one replaced.

A transcoder reads one module's output and replaces another's, so its key is the pair
``(input module, output module)``: ``splice(model, {("transformer.h.1.ln_2", "transformer.h.1.mlp"): tc})``
replaces the MLP's output with the transcoder's prediction of it from the MLP's input (plus, with
``use_error_term``, the MLP's own output minus that prediction).

The SAE's own hook points (``hook_sae_input`` ... ``hook_sae_output``) can be cached under
``<module name>.hook_sae_*`` (a transcoder's under its output module's name), the keys
``HookedSAETransformer`` uses. Only torch is needed here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import torch
from torch import nn

from saecore.hook_points import HookFn, HookPoint, NamesFilter, names_predicate
from saecore.sae import SAE
from saecore_source_llm.module_widths import module_output_width
from saecore_source_llm.sae_description import describe_sae
from saecore_source_llm.sae_splicing import SplicedSAE, check_width, unknown_name_error

SpliceHook = Callable[[nn.Module, Any, Any], Any]
SpliceKey = str | tuple[str, str]

# The SplicedSAE each module holds while a splice is active: the feature tools find the SAEs
# through it, and a nested splice cannot stack a second SAE on the module.
_SPLICED: WeakKeyDictionary[nn.Module, SplicedSAE] = WeakKeyDictionary()


@contextmanager
def splice(
    model: nn.Module,
    saes: Mapping[SpliceKey, SAE[Any]],
    use_error_term: bool | None = None,
    cache: dict[str, torch.Tensor] | None = None,
    names_filter: NamesFilter = None,
    incl_bwd: bool = False,
) -> Iterator[nn.Module]:
    """Run each SAE on the output of the module of ``model`` named by its key, inside the block.

    A transcoder's key is ``(input module, output module)``: it reads the first's output and
    replaces the second's. ``use_error_term=None`` keeps each SAE's own ``use_error_term``. With a ``cache`` dict, every
    forward pass stores the SAEs' hook point activations (detached) under
    ``<module name>.hook_sae_*``, those ``names_filter`` keeps (None for all, a name, a list of
    names or a predicate); with ``incl_bwd`` a backward pass stores their gradients as
    ``<key>_grad``. Every hook is removed when the block ends, also on an exception.
    """
    if cache is None and (names_filter is not None or incl_bwd):
        raise ValueError("names_filter and incl_bwd choose what splice caches; pass cache={} to collect it")
    modules = dict(model.named_modules())
    with ExitStack() as cleanup:
        for key, sae in saes.items():
            input_name, module_name = _places(key, sae)
            module = _module_to_splice(model, modules, module_name, sae, output=input_name != module_name)
            site = SplicedSAE(sae, input_name, sae.use_error_term if use_error_term is None else use_error_term,
                              module_output=True, output_name=module_name)
            if site.reads_elsewhere:
                source = _input_module(model, modules, input_name, sae)
                capture = source.register_forward_hook(_capture_output(site))
                cleanup.callback(capture.remove)
            _SPLICED[module] = site
            cleanup.callback(_SPLICED.pop, module, None)
            caching = None if cache is None else _caching_hooks(sae, module_name, cache, names_filter, incl_bwd)
            handle = module.register_forward_hook(_replace_output(site, caching))
            cleanup.callback(handle.remove)
        yield model


def _places(key: Any, sae: Any) -> tuple[str, str]:
    """(input module, output module) for one ``splice`` key: the same module for an SAE."""
    if not isinstance(sae, SAE):
        raise TypeError(f"splice takes {{module name: SAE}}; {key!r} maps to a {type(sae).__name__}")
    predicts_target = sae.cfg.PREDICTS_TARGET
    if isinstance(key, str) and not predicts_target:
        return key, key
    if predicts_target and isinstance(key, tuple) and len(key) == 2 and all(isinstance(name, str) for name in key):
        return key[0], key[1]
    if predicts_target:
        raise TypeError(f"{describe_sae(sae)} is a transcoder: splice takes it as {{(input module, output module): "
                        f"transcoder}}, such as ('transformer.h.1.ln_2', 'transformer.h.1.mlp'); got the key {key!r}")
    raise TypeError(f"splice takes an SAE as {{module name: SAE}}; got the key {key!r} (only a transcoder takes a "
                    "pair of module names)")


def _input_module(model: nn.Module, modules: dict[str, nn.Module], module_name: str, sae: SAE[Any]) -> nn.Module:
    """The module whose output a transcoder reads, once its width is known to be the transcoder's ``d_in``."""
    module = modules.get(module_name) if module_name else None
    if module is None:
        raise unknown_name_error(f"{type(model).__name__} has no module named {module_name!r} for "
                                 f"{describe_sae(sae)} to read", module_name, [name for name in modules if name],
                                 "model.named_modules()")
    width = module_output_width(model, module_name, module)
    if width is not None:
        check_width(sae, width, module_name, module_output=True)
    return module


def _capture_output(site: SplicedSAE) -> SpliceHook:
    """The forward hook that hands a module's output activation to a transcoder's site."""

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        site.capture(output if isinstance(output, torch.Tensor) else output[0])

    return hook


def spliced_saes(model: nn.Module) -> dict[str, SplicedSAE]:
    """The SAEs an active ``splice`` runs in ``model``, as ``SplicedSAE`` objects by module name."""
    return {site.hook_name: site for module in model.modules() if (site := _SPLICED.get(module)) is not None}


def _module_to_splice(
    model: nn.Module, modules: dict[str, nn.Module], module_name: str, sae: SAE[Any], output: bool = False
) -> nn.Module:
    """The module named ``module_name``, once the SAE is known to be one that can be spliced there.

    ``output`` says it is a transcoder's output module, whose width is checked against ``d_out``.
    """
    if sae.reshape_hook_z:
        raise ValueError(f"{describe_sae(sae)} has reshape_activations='hook_z' (attention heads of a TransformerLens "
                         f"hook_z); splice at {module_name!r} needs an SAE on the module's [..., d_in] output")
    module = modules.get(module_name) if module_name else None
    if module is None:
        raise unknown_name_error(f"{type(model).__name__} has no module named {module_name!r} to splice "
                                 f"{describe_sae(sae)} at", module_name, [name for name in modules if name],
                                 "model.named_modules()")
    held = _SPLICED.get(module)
    if held is not None:
        raise ValueError(f"{module_name} already holds {describe_sae(held.sae)} from an enclosing splice (as "
                         f"{held.hook_name}); end that block before splicing {describe_sae(sae)} there")
    width = module_output_width(model, module_name, module)
    if width is not None:
        check_width(sae, width, module_name, module_output=True, output=output)
    return module


def _caching_hooks(
    sae: SAE[Any], module_name: str, cache: dict[str, torch.Tensor], names_filter: NamesFilter, incl_bwd: bool
) -> tuple[list[tuple[str, HookFn]], list[tuple[str, HookFn]]]:
    """The (forward, backward) hooks on the SAE's hook points that fill ``cache`` for this module."""
    wanted = names_predicate(names_filter)
    keys = {point: f"{module_name}.{point}" for point in sae.hook_dict if wanted(f"{module_name}.{point}")}

    def saver(key: str) -> HookFn:
        def save(tensor: torch.Tensor, hook: HookPoint) -> None:
            cache[key] = tensor.detach()

        return save

    forward = [(point, saver(key)) for point, key in keys.items()]
    backward = [(point, saver(f"{key}_grad")) for point, key in keys.items()] if incl_bwd else []
    return forward, backward


def _replace_output(
    site: SplicedSAE, caching: tuple[list[tuple[str, HookFn]], list[tuple[str, HookFn]]] | None
) -> SpliceHook:
    """The forward hook that swaps the module's output activation for the SAE's output.

    The caching hooks are on the SAE only while it runs here, so an SAE spliced at two modules
    caches each pass under its own module's keys.
    """

    def run_site(activation: torch.Tensor) -> torch.Tensor:
        if caching is None:
            return site(activation)  # type: ignore[no-any-return]
        with site.sae.hooks(fwd_hooks=caching[0], bwd_hooks=caching[1]):
            return site(activation)  # type: ignore[no-any-return]

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return run_site(output)
        if type(output) in (tuple, list) and output and isinstance(output[0], torch.Tensor):
            return type(output)([run_site(output[0]), *output[1:]])
        raise TypeError(f"{site.hook_name} returns a {type(output).__name__}; splice replaces a module output that "
                        "is a tensor or a tuple whose first element is the hidden state")

    return hook
