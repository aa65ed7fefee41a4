"""The runner: one call from a config to a trained SAE on disk.

It resolves every name once (the training recipe from ``cfg.sae``, the source from the
class of ``cfg.source``), seeds torch, Python's ``random`` and numpy from ``cfg.seed``,
builds the SAE, trains it with :class:`SAETrainer`, and writes the inference SAE,
``sparsity.safetensors`` and ``runner_cfg.json`` to ``output_path``. Nothing is printed
when ``verbose=False``.

Started by torchrun (``WORLD_SIZE`` > 1), it first joins the process group (NCCL on
CUDA, gloo on the CPU, ``distributed_timeout_s``) and leaves it at the end, also after a
failure. Every rank then trains; only rank 0 talks to wandb, prints progress and writes
``output_path``, and the others return once it has. Every rank gets the same ``summary``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from saecore.distributed.context import DistributedContext, init_from_env, shutdown
from saecore.errors import ConfigError
from saecore.io.atomic import write_text_atomically
from saecore.registry import get_registry
from saecore.sources.base import ActivationSource
from saecore.training.checkpoint import RUNNER_CFG_FILENAME
from saecore.training.errors import TrainingInterruptedError
from saecore.training.rng import seed_everything
from saecore.training.runner_config import TrainingRunnerConfig, registered_source_name
from saecore.training.summary import TrainingSummary
from saecore.training.trainer import SAETrainer
from saecore.training.wandb_logger import WandbLogger
from saecore.training_sae import TrainingSAE


class TrainingRunner:
    """Train the SAE ``cfg.sae`` describes on ``source`` (default: built from ``cfg.source``).

    A source passed in is used as is and left open; one the runner builds is closed at
    the end. After ``run()``, ``summary`` holds the final numbers.
    """

    def __init__(
        self,
        cfg: TrainingRunnerConfig,
        source: ActivationSource | None = None,
        *,
        progress_stream: TextIO | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.progress_stream = progress_stream
        self.summary: TrainingSummary | None = None
        self.trainer: SAETrainer | None = None
        self.distributed = DistributedContext()

    @property
    def is_main_process(self) -> bool:
        """False on every rank but 0 of a data-parallel job: those print and write nothing."""
        return self.distributed.is_main

    def run(self) -> TrainingSAE[Any]:
        self.distributed, owns_group = init_from_env(self.cfg.device, self.cfg.distributed_timeout_s)
        together = False
        try:
            result = self._run()
            together = True
            return result
        except TrainingInterruptedError:
            together = True  # every rank agreed to stop at this step
            raise
        finally:
            if self.trainer is not None:
                self.trainer.release_data_parallel()
            shutdown(owns_group, together=together)

    def _run(self) -> TrainingSAE[Any]:
        cfg = self.cfg
        seed_everything(cfg.seed)
        owns_source = self.source is None
        source = self.source if self.source is not None else self.build_source()
        try:
            self.check_source(source)
            sae = self.build_sae(source)
            run_config = cfg.to_dict()
            logger = self.start_wandb(run_config) if self.distributed.is_main else None
            try:
                self.trainer = SAETrainer(
                    cfg.trainer_config(), sae, source,
                    logging=cfg.logger, metrics_logger=logger, run_config=run_config,
                    progress_stream=self.progress_stream, distributed=self.distributed,
                )
                if cfg.resume_from_checkpoint is not None:
                    self.trainer.load_checkpoint(cfg.resume_from_checkpoint)
                self.trainer.fit()
                output = self.save_output(sae, self.trainer, run_config) if self.distributed.is_main else None
                self.distributed.barrier()
                self.summary = self.summarise(sae, self.trainer, source)
                if logger is not None:
                    self.log_final(logger, output, sae, run_config)
            except BaseException:
                if logger is not None:
                    logger.finish(exit_code=1)
                raise
            if logger is not None:
                logger.finish()
        finally:
            if owns_source:
                source.close()
        return sae

    # -- building ------------------------------------------------------------------------
    def build_source(self) -> ActivationSource:
        entry = get_registry().source(registered_source_name(self.cfg.source))
        device = str(self.distributed.device_for(self.cfg.device))
        source: ActivationSource = entry.source_class(self.cfg.source, seed=self.cfg.seed, device=device)
        return source

    def check_source(self, source: ActivationSource) -> None:
        if self.cfg.sae.d_in != source.d_in:
            raise ConfigError(
                f"sae.d_in = {self.cfg.sae.d_in}, but the source ({type(source).__name__}) serves activations "
                f"of width {source.d_in}; set sae.d_in to {source.d_in}"
            )
        source.check_batch_size(self.cfg.train_batch_size_tokens)

    def build_sae(self, source: ActivationSource, stream: str | None = None) -> TrainingSAE[Any]:
        """A fresh training SAE on ``cfg.device``; ``cfg.sae`` itself is never mutated.

        The source's facts (model, hook, dataset …; those of ``stream`` when given) fill
        metadata keys the user left unset.
        """
        entry = get_registry().training_recipe(self.cfg.sae.architecture())
        sae_cfg = self.cfg.sae.model_copy(deep=True)
        sae_cfg.device = str(self.distributed.device_for(self.cfg.device))
        facts = source.sae_metadata() if stream is None else source.stream_metadata(stream)
        for key, value in facts.items():
            if sae_cfg.metadata.get(key) is None:
                sae_cfg.metadata[key] = value
        sae: TrainingSAE[Any] = entry.training_sae_class(sae_cfg)
        return sae

    def start_wandb(self, run_config: dict[str, Any], *, alongside_others: bool = False) -> WandbLogger | None:
        if not self.cfg.logger.log_to_wandb:
            return None
        return WandbLogger(
            self.cfg.logger, run_config=run_config, default_run_name=self.default_run_name(),
            quiet=not self.cfg.verbose, alongside_others=alongside_others,
        )

    def default_run_name(self) -> str:
        """SAELens's default: ``{architecture}-{d_sae}-LR-{lr}-Tokens-{training_tokens:3.3e}``."""
        cfg = self.cfg
        return f"{cfg.sae.architecture()}-{cfg.sae.d_sae}-LR-{cfg.lr}-Tokens-{cfg.training_tokens:3.3e}"

    # -- results -------------------------------------------------------------------------
    def save_output(self, sae: TrainingSAE[Any], trainer: SAETrainer, run_config: dict[str, Any]) -> Path | None:
        if self.cfg.output_path is None:
            return None
        output = Path(self.cfg.output_path)
        sae.save_inference_model(output, sparsity=trainer.log_feature_sparsity)
        write_text_atomically(output / RUNNER_CFG_FILENAME, json.dumps(run_config, indent=2))
        return output

    def summarise(self, sae: TrainingSAE[Any], trainer: SAETrainer, source: ActivationSource) -> TrainingSummary:
        metrics = trainer.final_metrics
        assert metrics is not None
        truth = source.ground_truth_features()
        recovery = None
        if truth is not None:
            from saecore.evals.ground_truth import ground_truth_recovery

            recovery = ground_truth_recovery(sae.W_dec.detach().float().cpu(), truth.detach().float().cpu())
        seconds = trainer.training_seconds
        return TrainingSummary(
            l0=metrics.l0,
            explained_variance=metrics.explained_variance,
            mse=metrics.mse,
            dead_features=int(trainer.dead_neurons.sum()),
            d_sae=sae.cfg.d_sae,
            n_tokens=trainer.n_training_tokens,
            seconds=seconds,
            tokens_per_second=trainer.trained_tokens_this_run / seconds if seconds > 0 else 0.0,
            output_path=self.cfg.output_path,
            ground_truth=recovery,
            source_metrics=dict(trainer.final_source_metrics),
        )

    def log_final(
        self, logger: WandbLogger, output: Path | None, sae: TrainingSAE[Any], run_config: dict[str, Any]
    ) -> None:
        assert self.summary is not None
        summary = {
            "final/l0": self.summary.l0,
            "final/explained_variance": self.summary.explained_variance,
            "final/mse": self.summary.mse,
            "final/dead_features": self.summary.dead_features,
        }
        summary.update({f"final/{name}": value for name, value in self.summary.source_metrics.items()})
        if self.summary.ground_truth is not None:
            summary.update({f"final/ground_truth_{k}": v for k, v in self.summary.ground_truth.as_dict().items()})
        logger.set_summary(summary)
        if output is not None:
            name = f"sae_{sae.cfg.architecture()}_{sae.cfg.d_sae}"
            logger.log_model(output, name=name, aliases=["final_model"], metadata=run_config)
