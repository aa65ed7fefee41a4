"""Named hook points: where users read or replace activations inside an SAE.

TransformerLens users know ``HookPoint`` and hook functions ``fn(tensor, hook)``. This is
the same contract built on plain ``nn.Module`` hooks, so the core never imports
transformer_lens. A hook function may return a tensor to replace the activation (or, for a
backward hook, the gradient).

The hook points speak TransformerLens's own API (``add_hook(fn, dir=, is_permanent=, level=,
prepend=)``, ``remove_hooks``, ``fwd_hooks``/``bwd_hooks``, ``ctx``) so that a TransformerLens
model holding a saecore SAE (SAELens's ``HookedSAETransformer`` among them) can hook and cache
them like its own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

HookFn = Callable[..., "torch.Tensor | None"]
HookDirection = Literal["fwd", "bwd"]
NamesFilter = Callable[[str], bool] | Sequence[str] | str | None
HookTarget = str | Callable[[str], bool]


@dataclass
class HookHandle:
    """One attached hook as TransformerLens keeps it: ``reset_hooks`` removes by permanence and level.

    ``add_hook`` returns it, as TransformerLens 4's does, for its callers that read ``is_permanent``.
    """

    hook: RemovableHandle
    is_permanent: bool = False
    context_level: int | None = None
    user_hook: HookFn | None = None

    def remove(self) -> None:
        """Detach the hook now, whatever its permanence."""
        self.hook.remove()


def _rebuild_hook_point(cls: type[HookPoint]) -> HookPoint:
    return cls.__new__(cls)


class HookPoint(nn.Module):
    """An identity module with a name; hooks added to it see and may replace its input."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self.fwd_hooks: list[HookHandle] = []
        self.bwd_hooks: list[HookHandle] = []
        self.ctx: dict[str, Any] = {}

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        """TransformerLens's ``HookPoint`` once transformer_lens is loaded, else the real class.

        TransformerLens finds hook points with ``isinstance(module, HookPoint)`` against its own
        class; ``isinstance`` consults ``__class__`` (as ``unittest.mock`` specs do), so these
        points are found and cached without the core importing transformer_lens.
        ``type(point)`` and ``isinstance(point, saecore.HookPoint)`` are unaffected.
        """
        lens = sys.modules.get("transformer_lens.hook_points")
        lens_class = getattr(lens, "HookPoint", None)
        return lens_class if isinstance(lens_class, type) else type(self)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """Pickle as the real class: pickle refuses objects whose ``__class__`` differs from their type."""
        return (_rebuild_hook_point, (type(self),), self.__getstate__())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def is_hooked(self) -> bool:
        """Whether a hook is attached: fused code that bypasses a hook point's value checks this."""
        return bool(self._forward_hooks or self._forward_pre_hooks or self._backward_hooks)

    def add_hook(
        self,
        fn: HookFn,
        dir: HookDirection = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> HookHandle:
        """Call ``fn(activation, hook=self)`` on every forward (``dir="fwd"``) or ``fn(grad, hook=self)``
        on every backward pass (``dir="bwd"``); a returned tensor replaces the activation or gradient.

        ``is_permanent`` hooks survive ``remove_hooks`` unless ``including_permanent``; ``level`` is the
        hook context that added it, whose exit removes it.
        """
        if dir == "fwd":

            def forward_hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
                return fn(output, hook=self)

            handle = self.register_forward_hook(forward_hook, prepend=prepend)
            entries = self.fwd_hooks
        elif dir == "bwd":

            def backward_hook(module: nn.Module, grad_input: Any, grad_output: Any) -> tuple[torch.Tensor] | None:
                replaced = fn(grad_output[0], hook=self)
                return None if replaced is None else (replaced,)

            handle = self.register_full_backward_hook(backward_hook, prepend=prepend)
            entries = self.bwd_hooks
        else:
            raise ValueError(f"hook direction must be 'fwd' or 'bwd', got {dir!r}")
        entry = HookHandle(handle, is_permanent, level, fn)
        entries.insert(0, entry) if prepend else entries.append(entry)
        return entry

    def remove_hooks(
        self,
        dir: Literal["fwd", "bwd", "both"] = "fwd",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove the non-permanent hooks (of one context ``level`` if given), or every hook."""
        if dir not in ("fwd", "bwd", "both"):
            raise ValueError(f"hook direction must be 'fwd', 'bwd' or 'both', got {dir!r}")

        def kept(entries: list[HookHandle]) -> list[HookHandle]:
            remaining = []
            for entry in entries:
                if including_permanent or (not entry.is_permanent and level in (None, entry.context_level)):
                    entry.hook.remove()
                else:
                    remaining.append(entry)
            return remaining

        if dir in ("fwd", "both"):
            self.fwd_hooks = kept(self.fwd_hooks)
        if dir in ("bwd", "both"):
            self.bwd_hooks = kept(self.bwd_hooks)

    def clear_context(self) -> None:
        """Empty ``ctx``, the dict hook functions may use to pass values between passes."""
        self.ctx = {}


def names_predicate(names_filter: NamesFilter) -> Callable[[str], bool]:
    """A ``names_filter`` (None for all, one name, a list of names, or a predicate) as a predicate."""
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        return names_filter.__eq__
    if callable(names_filter):
        return names_filter
    return set(names_filter).__contains__


class HookedModule(nn.Module):
    """Mixin for modules whose submodules include HookPoints addressed by name.

    ``hook_dict`` is fixed when ``name_hook_points`` runs, so code that swaps a hook point out
    for a while (SAELens disables an SAE's hooks that way) can put the same one back.
    """

    hook_dict: dict[str, HookPoint]
    context_level: int = 0

    def name_hook_points(self) -> None:
        self.hook_dict = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    def hook_points(self) -> Iterable[HookPoint]:
        return self.hook_dict.values()

    def _attach(self, target: HookTarget, fn: HookFn, dir: HookDirection) -> None:
        if isinstance(target, str):
            if target not in self.hook_dict:
                raise KeyError(f"no hook point named {target!r}; available: {', '.join(self.hook_dict)}")
            self.hook_dict[target].add_hook(fn, dir=dir, level=self.context_level)
            return
        for name, point in self.hook_dict.items():
            if target(name):
                point.add_hook(fn, dir=dir, level=self.context_level)

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: Literal["fwd", "bwd", "both"] = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove hooks from every hook point (see ``HookPoint.remove_hooks``)."""
        for point in self.hook_points():
            if clear_contexts:
                point.clear_context()
            point.remove_hooks(direction, including_permanent=including_permanent, level=level)

    @contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        bwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[HookedModule]:
        """Attach ``(hook_name or name predicate, fn)`` pairs for the duration of the block.

        Backward hooks fire on a ``backward()`` inside the block, or after it with ``reset_hooks_end=False``.
        """
        self.context_level += 1
        try:
            for target, fn in fwd_hooks:
                self._attach(target, fn, "fwd")
            for target, fn in bwd_hooks:
                self._attach(target, fn, "bwd")
            yield self
        finally:
            if reset_hooks_end:
                self.reset_hooks(clear_contexts, including_permanent=False, level=self.context_level)
            self.context_level -= 1

    def run_with_hooks(
        self,
        *args: Any,
        fwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        bwd_hooks: Sequence[tuple[HookTarget, HookFn]] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **kwargs: Any,
    ) -> Any:
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts):
            return self(*args, **kwargs)

    def get_caching_hooks(
        self, names_filter: NamesFilter = None, incl_bwd: bool = False, cache: dict[str, torch.Tensor] | None = None
    ) -> tuple[dict[str, torch.Tensor], list[tuple[str, HookFn]], list[tuple[str, HookFn]]]:
        """Hooks that store detached activations (and, with ``incl_bwd``, gradients as ``<name>_grad``)."""
        cache = {} if cache is None else cache
        wanted = names_predicate(names_filter)

        def saver(key: str) -> HookFn:
            def save(tensor: torch.Tensor, hook: HookPoint) -> None:
                cache[key] = tensor.detach()

            return save

        names = [name for name in self.hook_dict if wanted(name)]
        fwd = [(name, saver(name)) for name in names]
        bwd = [(name, saver(f"{name}_grad")) for name in names] if incl_bwd else []
        return cache, fwd, bwd

    def add_caching_hooks(
        self, names_filter: NamesFilter = None, incl_bwd: bool = False, cache: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Attach caching hooks until ``reset_hooks``; every later pass writes into the returned dict."""
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd, cache)
        for name, fn in fwd:
            self.hook_dict[name].add_hook(fn, dir="fwd")
        for name, fn in bwd:
            self.hook_dict[name].add_hook(fn, dir="bwd")
        return cache

    def cache_all(self, cache: dict[str, torch.Tensor], incl_bwd: bool = False) -> None:
        self.add_caching_hooks(None, incl_bwd, cache)

    def cache_some(self, cache: dict[str, torch.Tensor], names: NamesFilter, incl_bwd: bool = False) -> None:
        self.add_caching_hooks(names, incl_bwd, cache)

    def run_with_cache(
        self, *args: Any, names_filter: NamesFilter = None, incl_bwd: bool = False, **kwargs: Any
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Run forward and return ``(output, {hook_name: activation})``.

        With ``incl_bwd`` the output (a scalar, or summed) is backpropagated and gradients are
        cached as ``<hook_name>_grad``.
        """
        cache, fwd, bwd = self.get_caching_hooks(names_filter, incl_bwd)
        with self.hooks(fwd, bwd):
            out = self(*args, **kwargs)
            if incl_bwd:
                out.sum().backward()
        return out, cache
