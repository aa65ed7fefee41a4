"""One SAE's side of a run: building it, its wandb run, saving it and summarising it.

A run trains one or more SAEs on one stream (:class:`SAESweepRunner`; a
:class:`TrainingRunner` is the case of one). Everything here concerns a single SAE and
its own ``TrainingRunnerConfig``; what the SAEs share (source, stream, loop, folders'
claims) stays in the sweep runner.

Saving is where a finished run is most easily lost, so a save that fails (a full disk,
a folder removed underneath the run) does not end in a bare I/O error: the SAE is
written to a fallback folder instead, and :class:`OutputNotSavedError` names every path.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from saecore.distributed.context import DistributedContext
from saecore.errors import ConfigError, SaecoreError
from saecore.io.atomic import write_text_atomically
from saecore.registry import get_registry
from saecore.sources.base import ActivationSource
from saecore.training.checkpoint import RUNNER_CFG_FILENAME
from saecore.training.run_folders import METADATA_BYTES, require_free_space, state_bytes
from saecore.training.runner_config import TrainingRunnerConfig, registered_source_name
from saecore.training.summary import TrainingSummary
from saecore.training.trainer import SAETrainer
from saecore.training.wandb_logger import WandbLogger
from saecore.training_sae import TrainingSAE


class OutputNotSavedError(SaecoreError):
    """The trained SAE could not be written to ``output_path``; says where it went instead."""

    def __init__(self, output: Path, reason: str, fallback: Path | None, last_checkpoint: Path | None) -> None:
        self.output = output
        self.fallback = fallback
        self.last_checkpoint = last_checkpoint
        rescued = (
            f"it was saved to {fallback} instead" if fallback is not None
            else "no fallback folder could hold it either"
        )
        checkpoint = f"; the last checkpoint is {last_checkpoint}" if last_checkpoint is not None else ""
        super().__init__(f"the trained SAE could not be saved to {output} ({reason}); {rescued}{checkpoint}")


def fallback_folders() -> list[Path]:
    """Where an SAE goes when its output folder cannot take it: the temp folder, then the home folder."""
    return [Path(tempfile.gettempdir()), Path.home()]


class MemberRun:
    """Builds, saves and summarises the SAE that ``cfg`` describes, within one process of a job."""

    def __init__(self, cfg: TrainingRunnerConfig, distributed: DistributedContext) -> None:
        self.cfg = cfg
        self.distributed = distributed
        self.summary: TrainingSummary | None = None

    # -- building ------------------------------------------------------------------------
    def build_source(self) -> ActivationSource:
        entry = get_registry().source(registered_source_name(self.cfg.source))
        device = str(self.distributed.device_for(self.cfg.device))
        source: ActivationSource = entry.source_class(self.cfg.source, seed=self.cfg.seed, device=device)
        return source

    def build_sae(
        self, source: ActivationSource, stream: str | None = None, start_from: TrainingSAE[Any] | None = None
    ) -> TrainingSAE[Any]:
        """A fresh training SAE on ``cfg.device``, or ``start_from`` moved there (fine-tuning a given SAE).

        ``cfg.sae`` itself is never mutated. The source's facts (model, hook, dataset …;
        those of ``stream`` when given) fill metadata keys left unset.
        """
        device = str(self.distributed.device_for(self.cfg.device))
        facts = source.sae_metadata() if stream is None else source.stream_metadata(stream)
        if start_from is not None:
            if start_from.cfg.architecture() != self.cfg.sae.architecture():
                raise ConfigError(f"the SAE to train is a {start_from.cfg.architecture()!r} training SAE, but the "
                                  f"run's sae config is {self.cfg.sae.architecture()!r}; give the SAE's own config")
            start_from.to(device)
            self._fill_metadata(start_from.cfg.metadata, facts)
            return start_from
        entry = get_registry().training_recipe(self.cfg.sae.architecture())
        sae_cfg = self.cfg.sae.model_copy(deep=True)
        sae_cfg.device = device
        self._fill_metadata(sae_cfg.metadata, facts)
        sae: TrainingSAE[Any] = entry.training_sae_class(sae_cfg)
        return sae

    @staticmethod
    def _fill_metadata(metadata: Any, facts: dict[str, Any]) -> None:
        for key, value in facts.items():
            if metadata.get(key) is None:
                metadata[key] = value

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
    @staticmethod
    def output_bytes(sae: TrainingSAE[Any]) -> int:
        """What the saved SAE needs on disk: its tensors, the sparsity vector and the JSON files."""
        return state_bytes(sae) + 4 * sae.cfg.d_sae + METADATA_BYTES

    def save_output(self, sae: TrainingSAE[Any], trainer: SAETrainer, run_config: dict[str, Any]) -> Path | None:
        """Write the inference SAE to ``output_path``, or to a fallback folder (then raise OutputNotSavedError)."""
        if self.cfg.output_path is None:
            return None
        output = Path(self.cfg.output_path)
        try:
            self._write(output, sae, trainer, run_config)
        except Exception as error:  # any failure here would lose the run: rescue the SAE first
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            fallback = self._write_fallback(output, sae, trainer, run_config)
            raise OutputNotSavedError(output, reason, fallback, trainer.last_checkpoint) from error
        return output

    def _write(self, output: Path, sae: TrainingSAE[Any], trainer: SAETrainer, run_config: dict[str, Any]) -> None:
        require_free_space(output, self.output_bytes(sae), "the trained SAE")
        sae.save_inference_model(output, sparsity=trainer.log_feature_sparsity)
        write_text_atomically(output / RUNNER_CFG_FILENAME, json.dumps(run_config, indent=2))

    def _write_fallback(
        self, output: Path, sae: TrainingSAE[Any], trainer: SAETrainer, run_config: dict[str, Any]
    ) -> Path | None:
        for parent in fallback_folders():
            folder = parent / f"saecore-unsaved-{output.name}-{os.getpid()}-{secrets.token_hex(3)}"
            try:
                self._write(folder, sae, trainer, run_config)
            except Exception:  # try the next place; the caller names the original failure
                continue
            return folder
        return None

    def summarise(self, sae: TrainingSAE[Any], trainer: SAETrainer, source: ActivationSource) -> TrainingSummary:
        metrics = trainer.final_metrics
        assert metrics is not None
        truth = source.ground_truth_features()
        recovery = None
        # A pair source's truth lives in its target space: only a coder predicting that target is scored.
        if truth is not None and truth.shape[1] == sae.W_dec.shape[1]:
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
            tokens_this_run=trainer.trained_tokens_this_run,
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
