"""Named hook points: where users read or replace activations inside an SAE.

TransformerLens users know ``HookPoint`` and hook functions ``fn(tensor, hook)``. This is
the same contract built on plain ``nn.Module`` forward hooks, so the core never imports
transformer_lens. A hook function may return a tensor to replace the activation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

HookFn = Callable[..., "torch.Tensor | None"]


class HookPoint(nn.Module):
    """An identity module with a name; hooks added to it see and may replace its input."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def is_hooked(self) -> bool:
        """Whether a hook is attached: fused code that bypasses a hook point's value checks this."""
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def add_hook(self, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        """Call ``fn(activation, hook=self)`` on every pass; a returned tensor replaces it."""

        def forward_hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor | None:
            return fn(output, hook=self)

        return self.register_forward_hook(forward_hook)


class HookedModule(nn.Module):
    """Mixin for modules whose submodules include HookPoints addressed by name."""

    def name_hook_points(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name

    @property
    def hook_dict(self) -> dict[str, HookPoint]:
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}

    @contextmanager
    def hooks(self, fwd_hooks: list[tuple[str, HookFn]]) -> Iterator[None]:
        """Attach ``(hook_name, fn)`` pairs for the duration of the block."""
        points = self.hook_dict
        handles = []
        try:
            for name, fn in fwd_hooks:
                if name not in points:
                    raise KeyError(f"no hook point named {name!r}; available: {', '.join(points)}")
                handles.append(points[name].add_hook(fn))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def run_with_hooks(self, *args: Any, fwd_hooks: list[tuple[str, HookFn]], **kwargs: Any) -> Any:
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    def run_with_cache(
        self, *args: Any, names_filter: Callable[[str], bool] | list[str] | None = None, **kwargs: Any
    ) -> tuple[Any, dict[str, torch.Tensor]]:
        """Run forward and return ``(output, {hook_name: activation})``."""
        if isinstance(names_filter, list):
            wanted = set(names_filter)
            names_filter = wanted.__contains__
        cache: dict[str, torch.Tensor] = {}

        def make_saver(name: str) -> HookFn:
            def save(tensor: torch.Tensor, hook: HookPoint) -> None:
                cache[name] = tensor.detach()

            return save

        names = [n for n in self.hook_dict if names_filter is None or names_filter(n)]
        with self.hooks([(n, make_saver(n)) for n in names]):
            out = self(*args, **kwargs)
        return out, cache
