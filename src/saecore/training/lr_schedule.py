"""The learning-rate schedule: warm-up, a constant or cosine main phase, final decay.

It reproduces SAELens's ``SequentialLR`` chain as a closed form of the step index, so
the LR of any step is known without replaying the ones before it (resuming needs only
the step counter) and nothing is computed on the device. With ``W`` warm-up steps,
``D`` decay steps, ``T`` steps in all and ``t`` the 0-based step:

* warm-up, ``t < W``: ``lr · (1/W + (1 − 1/W) · t / (W − 1))``, from ``lr/W`` to ``lr``;
* main phase, ``τ = t − W`` over ``M = T − W − D`` steps: ``lr`` (constant),
  ``lr_end + (lr − lr_end) · (1 + cos(π τ / M)) / 2`` (cosine annealing), or the same
  with ``τ mod C`` over ``C = M // n_restart_cycles`` (cosine annealing with warm
  restarts: the LR jumps back to ``lr`` every ``C`` steps, as torch's
  ``CosineAnnealingWarmRestarts(T_0=C)``);
* decay, ``i = t − (T − D)``: ``start · (1 − i / D)``, with ``start = lr`` after a
  constant phase and ``lr_end`` after cosine annealing (with or without restarts).
"""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULE_NAMES = ("constant", "cosineannealing", "cosineannealingwarmrestarts")


class LRSchedule:
    """Sets the optimizer's learning rate for each step; state is the last step applied."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        name: str,
        lr: float,
        total_steps: int,
        warm_up_steps: int,
        decay_steps: int,
        lr_end: float,
        restart_cycles: int = 1,
    ) -> None:
        if name not in SCHEDULE_NAMES:
            raise ValueError(f"lr_scheduler_name={name!r}: allowed values are {', '.join(map(repr, SCHEDULE_NAMES))}")
        if warm_up_steps + decay_steps > total_steps:
            raise ValueError(
                f"lr_warm_up_steps ({warm_up_steps}) + lr_decay_steps ({decay_steps}) exceed "
                f"the {total_steps} training steps"
            )
        self.optimizer = optimizer
        self.name = name
        self.lr = lr
        self.total_steps = total_steps
        self.warm_up_steps = warm_up_steps
        self.decay_steps = decay_steps
        self.lr_end = lr_end
        main_steps = total_steps - warm_up_steps - decay_steps
        if name == "cosineannealingwarmrestarts" and not 1 <= restart_cycles <= main_steps:
            raise ValueError(f"n_restart_cycles={restart_cycles} must be between 1 and the {main_steps} steps "
                             "between warm-up and decay")
        self.cycle_steps = main_steps // restart_cycles if name == "cosineannealingwarmrestarts" else main_steps
        self.last_step = -1

    def lr_at(self, step: int) -> float:
        """The learning rate of 0-based ``step``."""
        warm_up, decay = self.warm_up_steps, self.decay_steps
        if step < warm_up:
            if warm_up == 1:
                return self.lr
            start = 1.0 / warm_up
            return self.lr * (start + (1.0 - start) * step / (warm_up - 1))
        decay_start = self.total_steps - decay
        if step < decay_start:
            if self.name == "constant":
                return self.lr
            progress = ((step - warm_up) % self.cycle_steps) / self.cycle_steps
            return self.lr_end + (self.lr - self.lr_end) * (1 + math.cos(math.pi * progress)) / 2
        start_lr = self.lr if self.name == "constant" else self.lr_end
        into_decay = min(step - decay_start, decay)
        return start_lr * (1.0 - into_decay / decay)

    def apply(self, step: int) -> float:
        """Set every parameter group's LR to the one of ``step`` and return it."""
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_step = step
        return lr

    @property
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state["last_step"])
        if self.last_step >= 0:
            self.apply(self.last_step)
