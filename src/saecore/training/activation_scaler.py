"""The ``expected_average_only_in`` input scale: train on ``s·x`` with ``s = √d_in / E‖x‖``.

Different models' activations differ in norm by orders of magnitude; scaling them to an
expected norm of ``√d_in`` lets one learning rate and one sparsity coefficient work
across them. ``s`` is estimated once, from batches the source serves before training
(those batches are consumed, not trained on), kept in checkpoints so a resumed run
trains on the same scale, and folded into the weights at the end so the saved SAE
takes raw activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch

from saecore.errors import ConfigError


class BatchSupplier(Protocol):
    """Anything that serves batches: an ActivationSource, or the trainer's whole-global-batch view."""

    @property
    def device(self) -> torch.device: ...

    def next_batch(self, batch_size: int) -> torch.Tensor: ...


class ActivationScaler:
    """Holds ``s`` (None: no scaling) and applies it to batches."""

    def __init__(self, scaling_factor: float | None = None) -> None:
        self.scaling_factor = scaling_factor

    def scale(self, batch: torch.Tensor) -> torch.Tensor:
        return batch if self.scaling_factor is None else batch * self.scaling_factor

    def unscale(self, batch: torch.Tensor) -> torch.Tensor:
        return batch if self.scaling_factor is None else batch / self.scaling_factor

    def estimate(self, source: BatchSupplier, *, d_in: int, n_batches: int, batch_size: int) -> float:
        """Set ``s = √d_in / mean‖x‖`` over ``n_batches`` batches from ``source`` and return it."""
        estimate_scales([(self, slice(0, d_in))], source, n_batches=n_batches, batch_size=batch_size)
        assert self.scaling_factor is not None
        return self.scaling_factor

    def estimate_scaling_factor(
        self, d_in: int, data_provider: Iterator[torch.Tensor], n_batches_for_norm_estimate: int = 1000
    ) -> None:
        """SAELens's form of :meth:`estimate`: ``s`` from the next batches of an iterator (an ActivationsStore)."""
        estimate_scales([(self, slice(0, d_in))], _IteratorBatches(data_provider),
                        n_batches=n_batches_for_norm_estimate, batch_size=0)

    def state_dict(self) -> dict[str, Any]:
        return {"scaling_factor": self.scaling_factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        value = state["scaling_factor"]
        self.scaling_factor = None if value is None else float(value)


class _IteratorBatches:
    """An iterator of batches seen as a BatchSupplier: each ``next_batch`` is the iterator's next batch, whole."""

    def __init__(self, batches: Iterator[torch.Tensor]) -> None:
        self.batches = batches
        self.device = torch.device("cpu")

    def next_batch(self, batch_size: int) -> torch.Tensor:
        batch = next(self.batches)
        self.device = batch.device
        return batch


@torch.no_grad()
def estimate_scales(
    scalers: Sequence[tuple[ActivationScaler, slice]], source: BatchSupplier, *, n_batches: int, batch_size: int
) -> None:
    """Estimate each scaler's ``s`` from its columns of the same ``n_batches`` batches.

    One pass serves every SAE of a sweep that scales its inputs, each from its own
    stream's columns, so the stream is consumed once whatever the number of SAEs.
    """
    totals = [torch.zeros((), dtype=torch.float64, device=source.device) for _ in scalers]
    count = 0
    for _ in range(n_batches):
        batch = source.next_batch(batch_size)
        for total, (_, columns) in zip(totals, scalers):
            total += batch[:, columns].float().norm(dim=-1).to(torch.float64).sum().to(total.device)
        count += batch.shape[0]
    for total, (scaler, columns) in zip(totals, scalers):
        d_in = len(range(*columns.indices(batch.shape[-1])))
        mean_norm = float(total) / count
        if not mean_norm > 0 or mean_norm == float("inf"):
            raise ConfigError(
                f"normalize_activations='expected_average_only_in': the mean activation norm over "
                f"{n_batches} batches (n_batches_for_norm_estimate) is {mean_norm}, so no scale can be set; "
                "check the source's activations"
            )
        scaler.scaling_factor = d_in**0.5 / mean_norm
