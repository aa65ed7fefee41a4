"""Weights & Biases logging, imported only when ``log_to_wandb`` is set.

wandb is an optional extra; nothing outside this module imports it, so a run without
it never pays its import time or needs it installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from saecore.errors import ConfigError
from saecore.io.format import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME
from saecore.training.logging_config import LoggingConfig


def _artifact_name(name: str) -> str:
    """wandb artifact names allow letters, digits, dashes, underscores and dots only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class WandbLogger:
    """One wandb run: metrics by step, histograms, the final model as an artifact."""

    def __init__(
        self,
        cfg: LoggingConfig,
        *,
        run_config: Mapping[str, Any],
        default_run_name: str,
        quiet: bool = False,
        alongside_others: bool = False,
    ) -> None:
        """``alongside_others``: this run is one of several open at once (the SAEs of a sweep)."""
        try:
            import wandb
        except ImportError:
            raise ConfigError(
                "logger.log_to_wandb=True needs the wandb package: pip install 'saecore[wandb]' "
                "(or set log_to_wandb=False)"
            ) from None
        self._wandb = wandb
        self.cfg = cfg
        self.run = wandb.init(
            project=cfg.wandb_project,
            entity=cfg.wandb_entity,
            name=cfg.run_name or default_run_name,
            id=cfg.wandb_id,
            resume="allow" if cfg.wandb_id else None,
            config=dict(run_config),
            settings=wandb.Settings(silent=quiet),
            **({"reinit": "create_new"} if alongside_others else {}),
        )

    def log(
        self, values: Mapping[str, float], *, step: int, histograms: Mapping[str, torch.Tensor] | None = None
    ) -> None:
        record: dict[str, Any] = dict(values)
        for key, data in (histograms or {}).items():
            record[key] = self._wandb.Histogram(data.detach().float().cpu().numpy())
        self.run.log(record, step=step)

    def set_summary(self, values: Mapping[str, Any]) -> None:
        self.run.summary.update(dict(values))

    def log_model(self, folder: Path, *, name: str, aliases: list[str], metadata: Mapping[str, Any]) -> None:
        """Upload a saved SAE folder: cfg.json always, weights if ``log_weights_to_wandb``, sparsity."""
        artifact_name = _artifact_name(name)
        model = self._wandb.Artifact(artifact_name, type="model", metadata=dict(metadata))
        model.add_file(str(folder / SAE_CFG_FILENAME))
        if self.cfg.log_weights_to_wandb:
            model.add_file(str(folder / SAE_WEIGHTS_FILENAME))
        self.run.log_artifact(model, aliases=aliases)
        sparsity_path = folder / SPARSITY_FILENAME
        if sparsity_path.is_file():
            sparsity = self._wandb.Artifact(f"{artifact_name}_log_feature_sparsity", type="log_feature_sparsity",
                                            metadata=dict(metadata))
            sparsity.add_file(str(sparsity_path))
            self.run.log_artifact(sparsity, aliases=aliases)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)
