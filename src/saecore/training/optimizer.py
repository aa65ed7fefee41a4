"""Which of torch's three Adam implementations the trainer runs.

torch computes the same Adam update (with bias correction) three ways: a Python loop
over the parameters (``for_loop``), grouped ``_foreach`` ops over all of them
(``foreach``), or one fused kernel per device and dtype (``fused``). They differ in
speed and in float32 rounding only. ``auto`` picks ``fused`` on CUDA and on CPU, where it
is the fastest of the three (docs/training_fast_paths.md). Other devices keep torch's own
default, since fused has not been measured on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch.optim import Adam

AdamImplementation = Literal["auto", "fused", "foreach", "for_loop"]
_AUTO_FUSED_DEVICES = ("cuda", "cpu")
_FLAGS: dict[str, dict[str, bool]] = {
    "fused": {"fused": True, "foreach": False},
    "foreach": {"fused": False, "foreach": True},
    "for_loop": {"fused": False, "foreach": False},
}


def resolve_adam_implementation(implementation: AdamImplementation, device: torch.device) -> str | None:
    """The implementation ``implementation`` means on ``device``; None lets torch choose."""
    if implementation != "auto":
        return implementation
    return "fused" if device.type in _AUTO_FUSED_DEVICES else None


class ConfiguredAdam(Adam):
    """Adam that keeps the implementation it was built with when it loads a checkpoint.

    torch's ``load_state_dict`` takes every param group's options from the saved state,
    ``fused`` and ``foreach`` included, so a run resumed from a checkpoint written with
    another implementation (a CUDA run's fused Adam resumed on a CPU with ``for_loop``)
    would silently keep the old one. This puts the configured flags back and moves each
    step counter to where that implementation keeps it: beside the parameter as float32
    when fused, on the CPU otherwise. With the same implementation on both sides nothing
    changes, so resuming stays bitwise exact.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        flags = [(group["fused"], group["foreach"]) for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, (fused, foreach) in zip(self.param_groups, flags):
            group["fused"], group["foreach"] = fused, foreach
            for param in group["params"]:
                state = self.state.get(param, {})
                step = state.get("step")
                if isinstance(step, torch.Tensor):
                    state["step"] = step.to(dtype=torch.float32, device=param.device) if fused else step.cpu()


def build_adam(
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    betas: tuple[float, float],
    implementation: AdamImplementation,
    device: torch.device,
) -> ConfiguredAdam:
    """The trainer's Adam, in the implementation the config asks for on this device.

    An explicit ``fused`` on a device without fused kernels fails in torch's first
    ``step``, with torch's error listing the devices that have them.
    """
    resolved = resolve_adam_implementation(implementation, device)
    flags = _FLAGS[resolved] if resolved is not None else {}
    return ConfiguredAdam(params, lr=lr, betas=betas, **flags)
