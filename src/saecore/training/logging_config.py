"""Where and how often training reports metrics (SAELens's LoggingConfig fields)."""

from __future__ import annotations

import warnings

from pydantic import BaseModel, ConfigDict, Field, model_validator

UNREAD_SAELENS_FIELDS = ("log_activations_store_to_wandb", "log_optimizer_state_to_wandb")


class LoggingConfig(BaseModel):
    """Weights & Biases settings and logging cadence.

    ``log_to_wandb`` defaults to False (SAELens: True) because wandb is an optional
    extra here (``pip install 'saecore[wandb]'``). ``wandb_log_frequency`` is also the
    cadence of the progress line and of the NaN check, which are the only host syncs of
    the step loop.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    log_to_wandb: bool = False
    wandb_project: str = "saecore"
    wandb_id: str | None = None
    run_name: str | None = None
    wandb_entity: str | None = None
    wandb_log_frequency: int = Field(default=10, gt=0, description="Steps between metric logs.")
    eval_every_n_wandb_logs: int = Field(
        default=100, gt=0, description="Run evals every wandb_log_frequency × this many steps."
    )
    log_weights_to_wandb: bool = Field(
        default=True, description="Upload the weights with the final model artifact (the cfg is always uploaded)."
    )
    log_activations_store_to_wandb: bool = Field(default=False, description="Accepted and ignored, as in SAELens.")
    log_optimizer_state_to_wandb: bool = Field(default=False, description="Accepted and ignored, as in SAELens.")

    @model_validator(mode="after")
    def _warn_about_fields_without_effect(self) -> LoggingConfig:
        for name in UNREAD_SAELENS_FIELDS:
            if getattr(self, name):
                warnings.warn(f"LoggingConfig: {name}=True has no effect (SAELens does not read it either)",
                              UserWarning, stacklevel=2)
        return self
