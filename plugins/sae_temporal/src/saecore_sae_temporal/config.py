"""Config model of the temporal SAE (SAELens v6 field names and defaults)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from saecore import SAEConfig
from saecore.config.validation import PositiveCount

TemporalNormalizeActivations = Literal[
    "none", "expected_average_only_in", "constant_norm_rescale", "constant_scalar_rescale", "layer_norm"
]


class TemporalSAEConfig(SAEConfig):
    """Inference temporal SAE.

    Each attention layer has ``n_heads`` heads over keys and queries of width
    ``d_sae / bottleneck_factor``, so ``d_sae`` must be a multiple of
    ``bottleneck_factor · n_heads``. ``sae_diff_type="topk"`` with ``kval_topk`` keeps only
    the ``kval_topk`` largest novel codes per position (``None`` keeps all of them).
    ``normalize_activations="constant_scalar_rescale"`` multiplies inputs by
    ``activation_normalization_factor`` (and divides outputs by it); covariance whitening
    cannot be folded into the attention and is not accepted.
    """

    ARCHITECTURE: ClassVar[str] = "temporal"

    normalize_activations: TemporalNormalizeActivations = "none"  # type: ignore[assignment]
    n_heads: PositiveCount = 8
    n_attn_layers: int = Field(default=1, ge=0)
    bottleneck_factor: PositiveCount = 64
    sae_diff_type: Literal["relu", "topk"] = "topk"
    kval_topk: PositiveCount | None = None
    tied_weights: bool = True
    activation_normalization_factor: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _attention_and_k_fit(self) -> TemporalSAEConfig:
        block = self.bottleneck_factor * self.n_heads
        if self.d_sae % block:
            raise ValueError(
                f"d_sae = {self.d_sae} is not a multiple of bottleneck_factor * n_heads = "
                f"{self.bottleneck_factor} * {self.n_heads} = {block}; the attention splits d_sae / bottleneck_factor "
                "key and query dimensions over n_heads heads"
            )
        if self.kval_topk is not None and self.kval_topk > self.d_sae:
            raise ValueError(f"kval_topk = {self.kval_topk} is larger than d_sae = {self.d_sae}; "
                             f"allowed: 1 <= kval_topk <= d_sae ({self.d_sae}) or None")
        return self
