"""Config of the Matryoshka BatchTopK training recipe (SAELens v6 field names and defaults)."""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

from pydantic import Field, model_validator
from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig

from saecore import TrainingPresets


class MatryoshkaBatchTopKTrainingSAEConfig(BatchTopKTrainingSAEConfig):
    """Training recipe ``matryoshka_batchtopk``: BatchTopK plus one reconstruction loss per nested prefix.

    ``matryoshka_widths`` are the prefix sizes, strictly increasing; ``d_sae`` is appended
    as the last level when missing (the outer level is the whole SAE, whose loss is the
    ordinary ``mse_loss``). ``use_matryoshka_aux_loss`` applies AuxK level by level: the
    dead latents of each level reconstruct the error left by the prefix that ends there.
    """

    ARCHITECTURE: ClassVar[str] = "matryoshka_batchtopk"

    matryoshka_widths: list[int] = Field(
        default_factory=list, description="Nested level widths, strictly increasing; d_sae is appended if missing."
    )
    use_matryoshka_aux_loss: bool = Field(default=False, description="Apply AuxK per level instead of once.")

    @classmethod
    def synthetic_data_presets(cls, d_sae: int) -> TrainingPresets:
        """BatchTopK's presets, with one inner level at three quarters of the width."""
        presets = super().synthetic_data_presets(d_sae)
        return presets.model_copy(update={"sae": {**presets.sae, "matryoshka_widths": [3 * d_sae // 4]}})

    @model_validator(mode="after")
    def _nested_widths(self) -> MatryoshkaBatchTopKTrainingSAEConfig:
        widths = self.matryoshka_widths
        allowed = (
            f"allowed: strictly increasing widths in [1, d_sae={self.d_sae}], e.g. [{max(self.d_sae // 4, 1)}, "
            f"{max(self.d_sae // 2, 1)}] (d_sae is appended as the last level if missing)"
        )
        if not widths:
            raise ValueError(f"field 'matryoshka_widths' is empty: give the nested levels' widths; {allowed}")
        out_of_range = [w for w in widths if not 0 < w <= self.d_sae]
        if out_of_range:
            raise ValueError(f"field 'matryoshka_widths' = {widths}: {out_of_range} out of range; {allowed}")
        if any(inner >= outer for inner, outer in pairwise(widths)):
            raise ValueError(f"field 'matryoshka_widths' = {widths} is not strictly increasing; {allowed}")
        if widths[-1] != self.d_sae:
            widths.append(self.d_sae)
        return self
