"""SAELens's ``sae_lens.training.optim``: its LR scheduler factory and coefficient warm-up, over saecore's schedules.

``get_lr_scheduler`` returns a torch ``LRScheduler`` (``step()``, ``get_last_lr()``,
``state_dict()``) whose learning rates are those of saecore's ``LRSchedule``, the
closed form of SAELens's warm-up / main phase / decay chain. ``CoefficientScheduler``
counts steps as SAELens's does over saecore's ``CoefficientSchedule`` ramp.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim import lr_scheduler

from saecore.training.coefficients import CoefficientSchedule
from saecore.training.lr_schedule import LRSchedule
from saecore.training_sae import TrainCoefficientConfig


def get_lr_scheduler(
    scheduler_name: str,
    optimizer: torch.optim.Optimizer,
    training_steps: int,
    lr: float,
    warm_up_steps: int,
    decay_steps: int,
    lr_end: float,
    num_cycles: int,
) -> lr_scheduler.LRScheduler:
    """A scheduler giving step ``t`` the learning rate of ``LRSchedule`` ``scheduler_name`` (any case).

    ``num_cycles`` is the number of restarts of ``"cosineannealingwarmrestarts"``.
    """
    name = scheduler_name.lower()
    if decay_steps > 0 and lr_end == 0.0 and name != "constant":
        raise ValueError(f"decay_steps={decay_steps} with lr_end=0.0 would decay from 0 to 0; set lr_end above 0")
    schedule = LRSchedule(
        optimizer,
        name=name,
        lr=lr,
        total_steps=training_steps,
        warm_up_steps=warm_up_steps,
        decay_steps=decay_steps,
        lr_end=lr_end,
        restart_cycles=num_cycles,
    )
    last_scheduled_step = training_steps - 1 if decay_steps == 0 else training_steps

    def factor(step: int) -> float:
        return schedule.lr_at(min(step, last_scheduled_step)) / lr

    return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)


class CoefficientScheduler:
    """A scalar that ramps linearly from 0 to ``final_value`` over ``warm_up_steps`` calls to ``step()``."""

    def __init__(self, warm_up_steps: float, final_value: float) -> None:
        if isinstance(final_value, bool) or not isinstance(final_value, (float, int)):
            raise TypeError(f"final_value must be float or int, got {type(final_value)}.")
        self.warm_up_steps = warm_up_steps
        self.final_value = final_value
        self.current_step = 0
        self._schedule = CoefficientSchedule(
            {"value": TrainCoefficientConfig(value=final_value, warm_up_steps=int(warm_up_steps))}
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(final_value={self.final_value}, warm_up_steps={self.warm_up_steps})"

    def step(self) -> float:
        """Advance one step and return the new value."""
        self.current_step += 1
        return self.value

    @property
    def value(self) -> float:
        """The value after ``current_step`` steps: 0 before the first when there is a warm-up."""
        return self._schedule.at(self.current_step - 1)["value"]

    @property
    def current_value(self) -> float:
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"current_step": self.current_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.current_step = int(state_dict["current_step"])
