"""The architecture-agnostic trainer: batches in, a trained TrainingSAE out.

It knows the TrainingSAE contract (``training_forward_pass``, ``get_coefficients``) and
the ActivationSource contract (``next_batch``, ``state_dict``) and nothing about
language models or any particular architecture. Each step is::

    batch = source.next_batch(B) → s·batch → training_forward_pass → backward
          → clip_grad_norm_ → Adam.step → zero_grad(set_to_none=True)

with the LR and coefficients for the step computed on the host in advance. A transcoder's
batch holds ``[input | target]`` rows (``saecore.training.coder_columns``): each side gets
its own scale and the step receives both. The only
host syncs happen every ``wandb_log_frequency`` steps (metrics, progress, the NaN check),
at evaluations and at checkpoints; no plugin hook or registry lookup runs in the loop.

Data parallel (under torchrun, see docs/distributed.md): the same loop runs on every
rank. Each trains on its rows of the global batch (``saecore.distributed.sharding``), DDP
averages the gradients in ``backward``, the per-latent firing counts are summed over
ranks every step (so the dead-feature mask, hence AuxK, is the global one), and clipping,
Adam and the schedules then run identically everywhere. Evaluations see whole global
batches on every rank; step metrics are averaged over ranks at log steps, which are also
where ranks agree on a NaN loss or a stop signal. Only rank 0 logs and writes
checkpoints; the others wait until it has.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import torch

from saecore.distributed.context import DistributedContext
from saecore.distributed.data_parallel import training_step_function
from saecore.distributed.sharding import WholeBatches, choose_sharding
from saecore.errors import ConfigError, SAEFileError
from saecore.evals.reconstruction import ReconstructionMetrics, evaluate_reconstruction
from saecore.sources.base import ActivationSource
from saecore.sources.device_copy import batch_to_device
from saecore.training.activation_scaler import ActivationScaler, estimate_scales
from saecore.training.allocator import tune_malloc
from saecore.training.checkpoint import CheckpointContents, read_checkpoint, write_checkpoint
from saecore.training.coder_columns import check_pair_width, target_columns
from saecore.training.coefficients import CoefficientSchedule
from saecore.training.compiled_step import compiled_training_step
from saecore.training.errors import RankFailedError, TrainingDivergedError, TrainingInterruptedError
from saecore.training.feature_stats import FeatureStats
from saecore.training.interruption import StopRequest, stop_on_signals
from saecore.training.logging_config import LoggingConfig
from saecore.training.lr_schedule import LRSchedule
from saecore.training.optimizer import build_adam
from saecore.training.progress import Progress
from saecore.training.rng import capture_rng_state, restore_rng_state
from saecore.training.step_metrics import train_step_log
from saecore.training.trainer_config import TrainerConfig
from saecore.training.wandb_logger import WandbLogger
from saecore.training_sae import TrainingSAE, TrainStepInput, TrainStepOutput

SCALED_MODE = "expected_average_only_in"
DISTRIBUTED_STATE_KEY = "distributed"
_NO_NONFINITE_STEP = 2**62


def checkpoint_steps(total_steps: int, n_checkpoints: int) -> list[int]:
    """Steps after which to checkpoint: every ``total / (n_checkpoints + 1)`` of the run."""
    steps = {math.ceil(k * total_steps / (n_checkpoints + 1)) for k in range(1, n_checkpoints + 1)}
    return sorted(step for step in steps if 0 < step < total_steps)


class SAETrainer:
    """Trains ``sae`` on batches from ``source`` as ``cfg`` says.

    ``metrics_logger`` (a WandbLogger, or None) receives metrics; periodic evaluations
    run only when there is one to receive them (they consume batches from the source).
    ``run_config`` is written to each checkpoint's runner_cfg.json.

    ``distributed`` makes this trainer one rank of a data-parallel job (for instance
    ``saecore.distributed.current_context()`` after joining a process group); without it
    the trainer trains alone even inside a process group, so independent runs launched
    together never mix gradients by accident. In a job, every rank builds its trainer and
    calls ``fit``, ``evaluate``, ``save_checkpoint`` and ``load_checkpoint`` together;
    rank 0's ``metrics_logger`` decides whether periodic evaluations run.

    ``batches`` replaces the handout of batches chosen from ``source`` (a sweep passes
    each SAE its view of one shared stream); ``checkpoint_subfolder`` puts this SAE's
    checkpoints in ``{checkpoint_path}/{n_tokens}/{checkpoint_subfolder}``, so the SAEs
    of a sweep checkpoint side by side.
    """

    def __init__(
        self,
        cfg: TrainerConfig,
        sae: TrainingSAE[Any],
        source: ActivationSource,
        *,
        logging: LoggingConfig | None = None,
        metrics_logger: WandbLogger | None = None,
        run_config: Mapping[str, Any] | None = None,
        progress_stream: TextIO | None = None,
        distributed: DistributedContext | None = None,
        batches: WholeBatches | None = None,
        checkpoint_subfolder: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.logging = logging if logging is not None else LoggingConfig()
        self.distributed = distributed if distributed is not None else DistributedContext()
        self.device = self.distributed.device_for(cfg.device)
        self.sae = sae.to(self.device)
        self.source = source
        self.metrics_logger = metrics_logger if self.distributed.is_main else None
        self.run_config = dict(run_config) if run_config is not None else cfg.model_dump(mode="json")
        self.progress_stream = progress_stream

        self.total_steps = cfg.total_training_steps
        self.params = [p for p in self.sae.parameters() if p.requires_grad]
        self.optimizer = build_adam(
            self.params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
            implementation=cfg.optimizer_implementation, device=self.device,
        )
        self.lr_schedule = LRSchedule(
            self.optimizer,
            name=cfg.lr_scheduler_name,
            lr=cfg.lr,
            total_steps=self.total_steps,
            warm_up_steps=cfg.lr_warm_up_steps,
            decay_steps=cfg.lr_decay_steps,
            lr_end=cfg.resolved_lr_end,
            restart_cycles=cfg.n_restart_cycles,
        )
        self.coefficients = CoefficientSchedule(self.sae.get_coefficients())
        self.feature_stats = FeatureStats(self.sae.cfg.d_sae, cfg.dead_feature_window, self.device)
        self.scaler = ActivationScaler()
        self.target_scaler = ActivationScaler()
        self._columns = target_columns(self.sae.cfg)
        if batches is None and self._columns is not None:
            check_pair_width(self.sae.cfg, source)
        self.checkpoint_steps = checkpoint_steps(self.total_steps, cfg.n_checkpoints)
        self.malloc_tuning = tune_malloc(self.device) if cfg.tune_malloc else None
        self._training_step = compiled_training_step(
            training_step_function(
                self.sae, self.distributed, self.device, find_unused_parameters=cfg.ddp_find_unused_parameters
            ),
            self.device,
            enabled=cfg.compile_training_step,
            mode=cfg.compile_mode,
            backend=cfg.compile_backend,
        )
        self._batches = (
            batches if batches is not None
            else choose_sharding(source, self.distributed, cfg.distributed_sharding, cfg.train_batch_size_tokens)
        )
        self.checkpoint_subfolder = checkpoint_subfolder
        # Evaluations draw batches, so every rank must run them or none: rank 0 (the one that logs) decides.
        self._periodic_evaluations: bool = self.distributed.broadcast_from_main(metrics_logger is not None)

        self.n_training_steps = 0
        self.n_training_tokens = 0
        self.last_checkpoint: Path | None = None
        self.final_metrics: ReconstructionMetrics | None = None
        self.final_source_metrics: dict[str, float] = {}
        self.training_seconds = 0.0
        self._started = 0.0
        self._tokens_at_start = 0
        self.trained_tokens_this_run = 0
        self._last_checkpoint_step = -1
        self._first_nonfinite_step = torch.full((), -1, dtype=torch.long, device=self.device)
        self._autocast: contextlib.AbstractContextManager[Any] = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.autocast else contextlib.nullcontext()
        )
        self._progress = Progress(total_tokens=1, total_steps=1, enabled=False)

    # -- public state ------------------------------------------------------------------
    @property
    def log_feature_sparsity(self) -> torch.Tensor:
        """``log10(firing frequency + 1e-10)`` over the current sampling window."""
        return self.feature_stats.log_feature_sparsity

    @property
    def dead_neurons(self) -> torch.Tensor:
        return self.feature_stats.dead_mask()

    @property
    def scaling_factor(self) -> float | None:
        """The input scale while training runs (None when unused or already folded in)."""
        return self.scaler.scaling_factor

    @property
    def target_scaling_factor(self) -> float | None:
        """A transcoder's target scale while training runs (None for an SAE, unused, or folded in)."""
        return self.target_scaler.scaling_factor

    def scales_to_estimate(self) -> list[tuple[ActivationScaler, slice]]:
        """The scalers still to estimate, each with its columns of this trainer's batches."""
        if self.sae.cfg.normalize_activations != SCALED_MODE or self.scaler.scaling_factor is not None:
            return []
        if self._columns is None:
            return [(self.scaler, slice(0, self.sae.cfg.d_in))]
        return [(self.scaler, self._columns[0]), (self.target_scaler, self._columns[1])]

    # -- the run -----------------------------------------------------------------------
    def fit(self) -> TrainingSAE[Any]:
        """Train to ``training_tokens``, evaluate, fold the input scale in, return the SAE."""
        self.begin_fit()
        try:
            with stop_on_signals() as stop:
                self._estimate_scale_if_needed()
                self.sae.train()
                while not self.is_done:
                    self.run_step(stop)
            self.end_fit()
        except RuntimeError as error:
            self.raise_rank_failure(error)
        finally:
            self._progress.close()
        return self.sae

    @property
    def is_done(self) -> bool:
        return self.n_training_steps >= self.total_steps

    def release_data_parallel(self) -> None:
        """Drop the DDP wrapper now, while the process group still exists.

        A DDP reducer holds a reference to the process group. Left to be freed after
        ``destroy_process_group``, it holds the last one, and freeing it then runs gloo's
        destructor with the GIL held while gloo's worker thread waits for the GIL to drop a
        finished job: a rare hang at exit, seen under torchrun. The runners call this before
        leaving the group; the trainer can still run steps afterwards, on one process.
        """
        if self.distributed.is_distributed:
            self._training_step = self.sae.training_forward_pass
            gc.collect()  # the wrapper sits in reference cycles; free it before the group goes

    def begin_fit(self, *, show_progress: bool = True) -> None:
        """Start the clock and the progress display (``fit`` does this; a sweep calls it per SAE)."""
        self._started = time.perf_counter()
        self._tokens_at_start = self.n_training_tokens
        self._progress = Progress(
            total_tokens=self.cfg.total_training_tokens,
            total_steps=self.total_steps,
            initial_tokens=self.n_training_tokens,
            enabled=show_progress and self.cfg.verbose and self.distributed.is_main,
            stream=self.progress_stream,
        )

    def run_step(self, stop: StopRequest) -> None:
        """One optimizer step with its logging, evaluation and checkpoint, then honour ``stop``."""
        self._start_of_step()
        output = self._train_step()
        self._end_of_step(output, stop)

    def end_fit(self) -> None:
        """After the last step: check for divergence, evaluate, fold the scale in."""
        self._raise_if_diverged()
        self.trained_tokens_this_run = self.n_training_tokens - self._tokens_at_start
        self.training_seconds = time.perf_counter() - self._started
        self._progress.finish(step=self.n_training_steps, n_tokens=self.n_training_tokens,
                              elapsed_seconds=self.training_seconds)
        self._finish()

    def close_progress(self) -> None:
        self._progress.close()

    def write_progress_note(self, text: str) -> None:
        """A line beside the progress display (shown only where progress is)."""
        self._progress.write(text)

    @property
    def checkpointed_this_step(self) -> bool:
        return self.last_checkpoint is not None and self._last_checkpoint_step == self.n_training_steps

    @property
    def batches(self) -> WholeBatches:
        """Where this trainer's batches come from (the source, a rank's share, or a sweep's shared stream)."""
        return self._batches

    def raise_rank_failure(self, error: RuntimeError) -> None:
        """In a data-parallel run a collective that fails means another rank died: say which run stopped where."""
        if not self.distributed.is_distributed:
            raise error
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RankFailedError(
            self.distributed.rank, self.distributed.world_size, self.n_training_steps,
            self.cfg.distributed_timeout_s, self.last_checkpoint, cause,
        ) from error

    def _estimate_scale_if_needed(self) -> None:
        scalers = self.scales_to_estimate()
        if not scalers or self.n_training_steps >= self.total_steps:
            return
        estimate_scales(
            scalers, self._batches, n_batches=self.cfg.n_batches_for_norm_estimate,
            batch_size=self.cfg.train_batch_size_tokens,
        )
        self._progress.write(self.scale_note())

    def scale_note(self) -> str:
        """The line that reports the estimated scales."""
        note = f"activation scale s = sqrt(d_in) / mean norm = {self.scaler.scaling_factor:.6g}"
        if self.target_scaler.scaling_factor is not None:
            note += f", target scale = sqrt(d_out) / mean norm = {self.target_scaler.scaling_factor:.6g}"
        return f"{note} (from {self.cfg.n_batches_for_norm_estimate} batches)"

    def _start_of_step(self) -> None:
        """Close a full sampling window before the step that starts the next one (as SAELens)."""
        step = self.n_training_steps
        if step > 0 and step % self.cfg.feature_sampling_window == 0:
            self._log_sampling_window()
            self.feature_stats.reset_window()

    def _train_step(self) -> TrainStepOutput:
        step = self.n_training_steps
        rows = batch_to_device(self._batches.local_batch(self.cfg.train_batch_size_tokens), self.device)
        if self._columns is None:
            batch, target = self.scaler.scale(rows), None
        else:
            batch = self.scaler.scale(rows[:, self._columns[0]])
            target = self.target_scaler.scale(rows[:, self._columns[1]])
        n_rows = batch.shape[0] * self.distributed.world_size
        self.lr_schedule.apply(step)
        step_input = TrainStepInput(
            sae_in=batch,
            target=target,  # type: ignore[arg-type]
            coefficients=self.coefficients.at(step),
            dead_neuron_mask=self.feature_stats.dead_mask(),
            n_training_steps=step,
            is_logging_step=(step + 1) % self.logging.wandb_log_frequency == 0,
            accelerator_support_route=self.cfg.accelerator_support_route,
        )
        with self._autocast:
            output = self._training_step(step_input)
        output.release_forward_only_fields()
        self.feature_stats.update(self._global_firing_counts(output), n_rows)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._track_divergence(output.loss, step)
        self.n_training_steps += 1
        self.n_training_tokens += n_rows
        return output

    def _global_firing_counts(self, output: TrainStepOutput) -> torch.Tensor:
        """This step's firing counts over the whole global batch (summed over ranks)."""
        counts = output.latent_firing_counts()
        if not self.distributed.is_distributed:
            return counts
        return self.distributed.sum_((counts.to_dense() if counts.is_sparse else counts).contiguous())

    def _end_of_step(self, output: TrainStepOutput, stop: StopRequest) -> None:
        step = self.n_training_steps
        frequency = self.logging.wandb_log_frequency
        is_log_step = step % frequency == 0
        if is_log_step:
            self._log_step(output)
        if self._periodic_evaluations and step % (frequency * self.logging.eval_every_n_wandb_logs) == 0:
            self._log_evaluation(self.evaluate(), self._batches.source_metrics(self.sae, self.scaler.scaling_factor))
        if step in self.checkpoint_steps:
            self.save_checkpoint()
        if self.should_stop(stop, is_log_step):
            folder = None
            if self.cfg.checkpoint_path is not None:
                folder = self.last_checkpoint if self.checkpointed_this_step else self.save_checkpoint()
            raise TrainingInterruptedError(stop.signal_name or "a signal to another rank", step, folder)

    def should_stop(self, stop: StopRequest, is_log_step: bool) -> bool:
        """A single process stops after any step; ranks stop together, agreeing at log steps."""
        if not self.distributed.is_distributed:
            return stop.requested
        return is_log_step and self.distributed.any(stop.requested)

    def _finish(self) -> None:
        window = self.cfg.feature_sampling_window
        if self.n_training_steps > 0 and self.n_training_steps % window == 0:
            self._log_sampling_window()
        self.final_metrics = self.evaluate()
        if self.scaler.scaling_factor is not None:
            self.sae.fold_activation_norm_scaling_factor(
                self.scaler.scaling_factor, self.target_scaler.scaling_factor
            )
            self.scaler.scaling_factor = None
            self.target_scaler.scaling_factor = None
        self.final_source_metrics = self._batches.source_metrics(self.sae, None)
        if self.feature_stats.n_frac_active_samples > 0:
            self.sae.cfg.metadata.l0 = float(self.feature_stats.feature_sparsity.sum())
            self.sae.cfg.metadata.num_dead_features = int(self.feature_stats.dead_mask().sum())
        self.sae.cfg.metadata.explained_variance = self.final_metrics.explained_variance
        self._log_evaluation(self.final_metrics, self.final_source_metrics)
        if self.cfg.save_final_checkpoint:
            self.save_checkpoint(f"final_{self.n_training_tokens}")

    # -- logging and evaluation --------------------------------------------------------
    def _log_step(self, output: TrainStepOutput) -> None:
        self._raise_if_diverged()
        log = train_step_log(
            output,
            passes_since_fired=self.feature_stats.n_forward_passes_since_fired,
            dead_mask=self.feature_stats.dead_mask(),
            learning_rate=self.lr_schedule.current_lr,
            n_training_tokens=self.n_training_tokens,
            coefficients=self.coefficients.at(self.n_training_steps - 1),
            reduce=self.distributed.mean if self.distributed.is_distributed else None,
        )
        self._progress.update(
            step=self.n_training_steps,
            n_tokens=self.n_training_tokens,
            loss=log["losses/overall_loss"],
            l0=log["metrics/l0"],
            explained_variance=log["metrics/explained_variance"],
        )
        if self.metrics_logger is not None:
            self.metrics_logger.log(log, step=self.n_training_steps)

    def _log_sampling_window(self) -> None:
        if self.metrics_logger is None:
            return
        scalars, log_sparsity = self.feature_stats.window_log()
        self.metrics_logger.log(
            scalars, step=self.n_training_steps, histograms={"plots/feature_density_line_chart": log_sparsity}
        )

    def _log_evaluation(self, metrics: ReconstructionMetrics, source_metrics: dict[str, float]) -> None:
        if self.metrics_logger is None:
            return
        self.metrics_logger.log(
            {**metrics.as_log_dict(), **{f"metrics/{name}": value for name, value in source_metrics.items()}},
            step=self.n_training_steps,
            histograms={"plots/eval_log10_feature_density": metrics.log10_feature_density()},
        )

    def evaluate(self) -> ReconstructionMetrics:
        """Reconstruction and sparsity metrics on ``n_eval_batches`` fresh batches (no grad).

        In a data-parallel run every rank evaluates the same whole global batches, so every
        rank gets the numbers a single process would.
        """
        batches = (
            self._batches.global_batch(self.cfg.train_batch_size_tokens) for _ in range(self.cfg.n_eval_batches)
        )
        return evaluate_reconstruction(
            self.sae, batches, scaling_factor=self.scaler.scaling_factor,
            target_scaling_factor=self.target_scaler.scaling_factor,
        )

    # -- divergence ----------------------------------------------------------------------
    def _track_divergence(self, loss: torch.Tensor, step: int) -> None:
        """Remember the first step with a non-finite loss, on the device (no sync)."""
        first = self._first_nonfinite_step
        newly_bad = ~torch.isfinite(loss.detach()) & (first < 0)
        self._first_nonfinite_step = torch.where(newly_bad, step, first)

    def _raise_if_diverged(self) -> None:
        first = int(self._first_nonfinite_step)
        if self.distributed.is_distributed:
            # Ranks see different rows: all of them stop if any one's loss went non-finite.
            first = self.distributed.min_int(first if first >= 0 else _NO_NONFINITE_STEP)
            first = -1 if first == _NO_NONFINITE_STEP else first
        if first >= 0:
            raise TrainingDivergedError(first + 1, self.last_checkpoint)

    def _raise_if_weights_not_finite(self) -> None:
        finite = torch.stack([p.detach().isfinite().all() for p in self.params]).all()
        if not bool(finite):
            raise TrainingDivergedError(self.n_training_steps, self.last_checkpoint)

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The trainer's side of a checkpoint (weights_only-loadable)."""
        return {
            "n_training_steps": self.n_training_steps,
            "n_training_tokens": self.n_training_tokens,
            "train_batch_size_tokens": self.cfg.train_batch_size_tokens,
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "feature_stats": self.feature_stats.state_dict(),
            "activation_scaler": self.scaler.state_dict(),
            "target_activation_scaler": self.target_scaler.state_dict(),
            "rng": capture_rng_state(),
        }

    def save_checkpoint(self, name: str | None = None) -> Path:
        """Write ``{checkpoint_path}/{name or n_tokens}/``; refuse if training has diverged.

        In a data-parallel run only rank 0 writes; the others wait until the folder exists.
        """
        self._raise_if_diverged()
        self._raise_if_weights_not_finite()
        if self.cfg.checkpoint_path is None:
            raise ConfigError("checkpoint_path=None: this run writes no checkpoints; set checkpoint_path to a folder")
        folder = Path(self.cfg.checkpoint_path) / (name or str(self.n_training_tokens))
        if self.checkpoint_subfolder is not None:
            folder = folder / self.checkpoint_subfolder
        source_state = self._batches.source_state_to_save()
        trainer_state = self._checkpoint_trainer_state()
        if self.distributed.is_main:
            assert source_state is not None and trainer_state is not None
            write_checkpoint(
                folder,
                sae=self.sae,
                sparsity=self.feature_stats.log_feature_sparsity,
                trainer_state=trainer_state,
                source_state=source_state,
                source_name=type(self.source).__name__,
                run_config=self.run_config,
            )
        # Waits for rank 0's write, and tells every rank where the checkpoint really is.
        folder = self.distributed.broadcast_from_main(folder)
        self.last_checkpoint = folder
        self._last_checkpoint_step = self.n_training_steps
        self._progress.write(f"checkpoint written: {folder}")
        return folder

    def _checkpoint_trainer_state(self) -> dict[str, Any] | None:
        """``state_dict()`` plus, in a data-parallel run, how the run was sharded (None off rank 0).

        With ``slice`` sharding every rank holds the same RNG and source states by
        construction, so rank 0's stand for all; when sources shard themselves, each
        rank's RNG state is kept beside its source position.
        """
        context = self.distributed
        if not context.is_distributed:
            return self.state_dict()
        note: dict[str, Any] = {"world_size": context.world_size, "sharding": self._batches.mode}
        if self._batches.per_rank_state:
            note["rank_rng"] = context.gather_to_main(capture_rng_state())
        if not context.is_main:
            return None
        return {**self.state_dict(), DISTRIBUTED_STATE_KEY: note}

    def _read_checkpoint(self, folder: Path) -> CheckpointContents:
        """Rank 0 reads the folder and hands it to every rank, so other nodes need no shared filesystem."""
        if not self.distributed.is_distributed:
            return read_checkpoint(folder, self.device)
        payload: CheckpointContents | Exception | None = None
        if self.distributed.is_main:
            try:
                payload = read_checkpoint(folder, "cpu")
            except Exception as error:  # every rank raises rank 0's error, instead of waiting for it
                payload = error
        payload = self.distributed.broadcast_from_main(payload)
        if isinstance(payload, Exception):
            raise payload
        assert payload is not None
        return payload

    def load_checkpoint(self, folder: str | Path) -> None:
        """Restore weights, optimizer, schedules, statistics, scale, RNGs and the source position."""
        contents = self._read_checkpoint(Path(folder))
        self._check_checkpoint_matches(contents.folder, contents.sae_cfg)
        state_dict = dict(contents.sae_state_dict)
        self.sae.process_state_dict_for_loading(state_dict)
        try:
            self.sae.load_state_dict(state_dict)
        except RuntimeError as error:
            raise SAEFileError(f"{contents.folder}: weights do not fit this SAE ({error})") from None
        self.sae.cfg.normalize_activations = contents.sae_cfg.get(
            "normalize_activations", self.sae.cfg.normalize_activations
        )
        state = contents.trainer_state
        if state["train_batch_size_tokens"] != self.cfg.train_batch_size_tokens:
            raise ConfigError(
                f"train_batch_size_tokens = {self.cfg.train_batch_size_tokens}, but the checkpoint "
                f"{contents.folder} was trained with {state['train_batch_size_tokens']}; resume with the same value"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        self.feature_stats.load_state_dict(state["feature_stats"])
        self.scaler.load_state_dict(state["activation_scaler"])
        if "target_activation_scaler" in state:
            self.target_scaler.load_state_dict(state["target_activation_scaler"])
        self.n_training_steps = int(state["n_training_steps"])
        self.n_training_tokens = int(state["n_training_tokens"])
        written_by = state.get(DISTRIBUTED_STATE_KEY)
        self._batches.restore_source_state(contents.source_state, written_by)
        per_rank_rng = written_by is not None and "rank_rng" in written_by
        restore_rng_state(written_by["rank_rng"][self.distributed.rank] if per_rank_rng else state["rng"])
        self.last_checkpoint = contents.folder
        self._last_checkpoint_step = self.n_training_steps

    def _check_checkpoint_matches(self, folder: Path, sae_cfg: Mapping[str, Any]) -> None:
        expected = {"architecture": self.sae.cfg.architecture(), "d_in": self.sae.cfg.d_in, "d_sae": self.sae.cfg.d_sae}
        for key, value in expected.items():
            if sae_cfg.get(key) != value:
                raise ConfigError(
                    f"resume_from_checkpoint={str(folder)!r}: the checkpoint's sae.{key} is {sae_cfg.get(key)!r} "
                    f"but this run's is {value!r}; resume with the configuration it was written with "
                    f"(its runner_cfg.json)"
                )
