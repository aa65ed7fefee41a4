"""Loss-coefficient warm-up: ``λ_t = λ · min((t + 1) / warm_up_steps, 1)`` for 0-based step t.

The SAE's ``get_coefficients()`` is read once, when the trainer is built; the step loop
only does float arithmetic here. (SAELens applies the same ramp one step later: its
first step uses 0.)
"""

from __future__ import annotations

from collections.abc import Mapping

from saecore.training_sae import TrainCoefficientConfig


class CoefficientSchedule:
    """Each named coefficient's value at a step; constant ones never change."""

    def __init__(self, coefficients: Mapping[str, float | TrainCoefficientConfig]) -> None:
        self.targets: dict[str, float] = {}
        self.warm_up_steps: dict[str, int] = {}
        for name, spec in coefficients.items():
            if isinstance(spec, TrainCoefficientConfig):
                value, warm_up = spec.value, spec.warm_up_steps
            else:
                value, warm_up = spec, 0
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"coefficient {name!r} must be a number, got {value!r}")
            if warm_up < 0:
                raise ValueError(f"coefficient {name!r}: warm_up_steps must be >= 0, got {warm_up}")
            self.targets[name] = float(value)
            self.warm_up_steps[name] = int(warm_up)
        self._longest_warm_up = max(self.warm_up_steps.values(), default=0)
        self._final = dict(self.targets)

    def at(self, step: int) -> dict[str, float]:
        """The coefficients of 0-based ``step`` (the same dict object once warm-up is over)."""
        if step + 1 >= self._longest_warm_up:
            return self._final
        return {
            name: target * min((step + 1) / self.warm_up_steps[name], 1.0) if self.warm_up_steps[name] else target
            for name, target in self.targets.items()
        }
