"""Several SAEs stepping in lockstep on one activation stream.

Each SAE keeps its own :class:`SAETrainer` (optimizer, schedules, statistics, scale,
logger); the sweep owns only what they share: the batch stream (a tee, see
``shared_stream``), the input-scale estimate, the stop signal and the checkpoint steps.
Per global step every SAE takes its step on the same batch, so the source (a language
model, say) produces each batch once however many SAEs learn from it.

In a sweep partitioned over ranks (``sae_placement="partition"``) each rank runs one of
these over its own SAEs, whose trainers are single-process ones; ``group`` is then the
job, and the sweep makes the ranks agree on what the trainers would otherwise decide
alone: whether the input scale is estimated, and when a signal stops the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from saecore.distributed.context import DistributedContext
from saecore.training.activation_scaler import estimate_scales
from saecore.training.errors import RankFailedError, TrainingDivergedError, TrainingInterruptedError
from saecore.training.interruption import StopRequest, stop_on_signals
from saecore.training.shared_stream import SharedBatches, StreamView
from saecore.training.trainer import SCALED_MODE, SAETrainer
from saecore.training_sae import TrainingSAE


class SweepTrainer:
    """Trains ``trainers`` (built on views of ``shared``) together; ``names`` label them in errors.

    ``group`` is every process taking part in the sweep (default: the trainers' own
    context, the whole job in a replicated sweep).
    """

    def __init__(
        self,
        trainers: Sequence[SAETrainer],
        names: Sequence[str],
        shared: SharedBatches,
        *,
        group: DistributedContext | None = None,
    ) -> None:
        if len(trainers) != len(names) or len(trainers) != shared.n_readers:
            raise ValueError("one name and one shared-stream reader per trainer")
        steps = {trainer.total_steps for trainer in trainers}
        if len(steps) != 1:
            raise ValueError(f"the SAEs of a sweep must take the same number of steps, got {sorted(steps)}")
        self.trainers = list(trainers)
        self.names = list(names)
        self.shared = shared
        self.group = group if group is not None else self.trainers[0].distributed

    @property
    def single(self) -> bool:
        """A run of one SAE, checkpointed straight into ``{checkpoint_path}/{n_tokens}`` (no per-SAE subfolder)."""
        return self.lead.checkpoint_subfolder is None

    def run_checkpoint(self) -> Path | None:
        """The folder to resume the whole run from: the lead's last checkpoint, or the sweep folder holding it."""
        last = self.lead.last_checkpoint
        return last if last is None or self.single else last.parent

    @property
    def lead(self) -> SAETrainer:
        """The first SAE's trainer: its progress line is shown, its step count is the sweep's."""
        return self.trainers[0]

    def fit(self) -> list[TrainingSAE[Any]]:
        """Train every SAE to ``training_tokens``, then evaluate and fold each one's scale in."""
        for index, trainer in enumerate(self.trainers):
            trainer.begin_fit(show_progress=index == 0 and self.group.is_main)
        try:
            with stop_on_signals() as stop:
                self._estimate_scales()
                for trainer in self.trainers:
                    trainer.sae.train()
                never = StopRequest()
                while not self.lead.is_done:
                    for name, trainer in zip(self.names, self.trainers):
                        with self._naming_diverged(name):
                            trainer.run_step(never)
                    self._stop_if_asked(stop)
            for name, trainer in zip(self.names, self.trainers):
                with self._naming_diverged(name):
                    trainer.end_fit()
        except RuntimeError as error:
            self._raise_rank_failure(error)
        finally:
            for trainer in self.trainers:
                trainer.close_progress()
        return [trainer.sae for trainer in self.trainers]

    def _estimate_scales(self) -> None:
        """One pass over ``n_batches_for_norm_estimate`` batches sets the scale of every SAE that needs one.

        The pass happens if any SAE of the whole sweep needs it, on every rank: a rank
        whose own SAEs need no scale still draws (and drops) those batches, so that its
        stream stays where a single-process sweep's would be.
        """
        scaled = [
            (scaler, _within(_columns(trainer), columns))
            for trainer in self.trainers
            if not trainer.is_done
            for scaler, columns in trainer.scales_to_estimate()
        ]
        if not self.group.any(bool(scaled)):
            return
        cfg = self.lead.cfg
        if not scaled:
            for _ in range(cfg.n_batches_for_norm_estimate):
                self.shared.handout.global_batch(cfg.train_batch_size_tokens)
            return
        estimate_scales(scaled, self.shared.handout, n_batches=cfg.n_batches_for_norm_estimate,
                        batch_size=cfg.train_batch_size_tokens)
        for name, trainer in zip(self.names, self.trainers):
            if trainer.scaler.scaling_factor is not None and trainer.sae.cfg.normalize_activations == SCALED_MODE:
                which = "" if self.single else f"{name}: "
                self.lead.write_progress_note(f"{which}{trainer.scale_note()}")

    def _stop_if_asked(self, stop: StopRequest) -> None:
        """On SIGINT/SIGTERM every SAE checkpoints at the same step, then the sweep stops.

        One process stops after any step; the ranks of a job agree at log steps, so a
        signal to one rank stops them all at the same step.
        """
        lead = self.lead
        is_log_step = lead.n_training_steps % lead.logging.wandb_log_frequency == 0
        if self.group.is_distributed:
            stopping = is_log_step and self.group.any(stop.requested)
        else:
            stopping = stop.requested
        if not stopping:
            return
        checkpoint = None
        if lead.cfg.checkpoint_path is not None:
            for trainer in self.trainers:
                if not trainer.checkpointed_this_step:
                    trainer.save_checkpoint()
            checkpoint = self.run_checkpoint()
        raise TrainingInterruptedError(stop.signal_name or "a signal to another rank", lead.n_training_steps,
                                       checkpoint)

    @contextlib.contextmanager
    def _naming_diverged(self, name: str) -> Iterator[None]:
        """Re-raise a member's divergence naming the SAE, pointing at the sweep's checkpoint folder."""
        try:
            yield
        except TrainingDivergedError as error:
            if self.single:
                raise
            checkpoint = error.last_checkpoint.parent if error.last_checkpoint is not None else None
            raise TrainingDivergedError(error.step, checkpoint, which=f" of the sweep's SAE {name!r}") from None

    def _raise_rank_failure(self, error: RuntimeError) -> None:
        """A failed collective in a job means another rank died or stalled: say where the sweep stopped."""
        group, lead = self.group, self.lead
        if not group.is_distributed:
            raise error
        checkpoint = self.run_checkpoint()
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RankFailedError(group.rank, group.world_size, lead.n_training_steps, lead.cfg.distributed_timeout_s,
                              checkpoint, cause) from error


def _within(outer: slice, inner: slice) -> slice:
    """``inner`` (columns of a trainer's own batches) as columns of the shared batch that ``outer`` cuts them from."""
    start = outer.start or 0
    return slice(start + inner.start, start + inner.stop)


def _columns(trainer: SAETrainer) -> slice:
    batches = trainer.batches
    if isinstance(batches, StreamView) and batches.columns is not None:
        return batches.columns
    return slice(None)
