"""Why a training run stopped before it finished.

Both carry what a person needs next: the step it happened at and, where one exists,
the checkpoint to resume from.
"""

from __future__ import annotations

from pathlib import Path

from saecore.errors import SaecoreError


class TrainingDivergedError(SaecoreError):
    """The loss became NaN or infinite; no checkpoint is written from that point on."""

    def __init__(self, step: int, last_checkpoint: Path | None, *, which: str = "") -> None:
        self.step = step
        self.last_checkpoint = last_checkpoint
        where = (
            f"the last good checkpoint is {last_checkpoint}"
            if last_checkpoint is not None
            else "no checkpoint was written before it"
        )
        super().__init__(
            f"training{which} diverged: the loss became NaN or infinite at step {step}; {where}. "
            "Lower lr, raise lr_warm_up_steps or lower max_grad_norm, or check the activations for inf/NaN"
        )


class TrainingInterruptedError(SaecoreError):
    """SIGINT or SIGTERM arrived; a checkpoint was written (unless checkpoint_path=None) and training stopped."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None) -> None:
        self.signal_name = signal_name
        self.step = step
        self.checkpoint = checkpoint
        super().__init__(self.describe(f"resume_from_checkpoint={str(checkpoint)!r}"))

    def describe(self, resume: str) -> str:
        """The message with ``resume`` saying how to continue (the Python keyword here; a flag on the command line)."""
        if self.checkpoint is None:
            return (f"training stopped by {self.signal_name} after step {self.step}; no checkpoint was written "
                    "(checkpoint_path=None), so the run cannot be resumed")
        return (f"training stopped by {self.signal_name} after step {self.step}; checkpoint written to "
                f"{self.checkpoint}. Resume with {resume}")


class RankFailedError(SaecoreError):
    """A data-parallel rank's step failed, most often because another rank died or stalled.

    Collectives on a dead peer fail at once; on a stalled one they give up after
    ``distributed_timeout_s``. Either way every surviving rank exits instead of hanging.
    """

    def __init__(
        self, rank: int, world_size: int, step: int, timeout_s: float, last_checkpoint: Path | None, cause: str
    ) -> None:
        self.rank = rank
        self.step = step
        self.last_checkpoint = last_checkpoint
        resume = (
            f"the last checkpoint is {last_checkpoint}: resume with resume_from_checkpoint={str(last_checkpoint)!r} "
            f"and {world_size} ranks"
            if last_checkpoint is not None
            else "no checkpoint was written yet (set n_checkpoints to be able to resume)"
        )
        super().__init__(
            f"rank {rank} of {world_size} failed after step {step}: {cause}. In a data-parallel run this usually "
            f"means another rank died or stalled (collectives give up after distributed_timeout_s={timeout_s:g} s); "
            f"{resume}"
        )
