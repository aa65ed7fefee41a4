"""What a finished run reports: the numbers a person checks first, and where the SAE went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saecore.evals.ground_truth import GroundTruthRecovery


@dataclass(frozen=True)
class TrainingSummary:
    """Final evaluation of a run (fresh batches, final weights) plus its cost."""

    l0: float
    explained_variance: float
    mse: float
    dead_features: int
    d_sae: int
    n_tokens: int
    seconds: float
    tokens_per_second: float
    output_path: str | None
    ground_truth: GroundTruthRecovery | None = None
    source_metrics: dict[str, float] = field(default_factory=dict)
    tokens_this_run: int | None = None
    """Tokens trained in this process (fewer than ``n_tokens`` after resuming); None: all of them."""

    def format(self) -> str:
        """The multi-line summary the CLI prints."""
        dead_share = 100 * self.dead_features / self.d_sae if self.d_sae else 0.0
        this_run = self.n_tokens if self.tokens_this_run is None else self.tokens_this_run
        speed = f"Trained on {this_run:,} tokens in {self.seconds:.1f} s ({self.tokens_per_second:,.0f} tokens/s)"
        if this_run != self.n_tokens:
            speed += f", resumed at {self.n_tokens - this_run:,}: {self.n_tokens:,} tokens in all"
        lines = [
            speed,
            f"  L0                   {self.l0:.2f}",
            f"  explained variance   {self.explained_variance:.4f}",
            f"  MSE                  {self.mse:.6g}",
            f"  dead features        {self.dead_features} / {self.d_sae} ({dead_share:.1f}%)",
        ]
        if self.ground_truth is not None:
            truth = self.ground_truth
            lines.append(
                f"  true features found  {100 * truth.fraction_recovered:.1f}% at cosine >= {truth.threshold:g} "
                f"(mean best cosine {truth.mean_max_cosine:.3f})"
            )
        for name, value in self.source_metrics.items():
            lines.append(f"  {name:20} {value:.4g}")
        saved = f"saved to             {self.output_path}" if self.output_path else "not saved (output_path=None)"
        lines.append(f"  {saved}")
        return "\n".join(lines)
