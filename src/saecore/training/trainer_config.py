"""The trainer's settings, with SAELens's names and defaults.

Differences from SAELens, each deliberate:

* training runs exactly ``training_tokens // train_batch_size_tokens`` steps (SAELens
  schedules the LR for that many but loops until the token count is reached, so a
  remainder adds one step that runs past the schedule);
* ``max_grad_norm`` is configurable (SAELens hard-codes 1.0);
* ``seed`` is applied (SAELens accepts it and never uses it).

Under torchrun (see docs/distributed.md) ``train_batch_size_tokens`` is the global batch,
split evenly over the ranks, so every other setting keeps its single-process meaning; the
``distributed_*`` fields and ``ddp_find_unused_parameters`` matter only there.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class TrainerConfig(BaseModel):
    """What the architecture-agnostic trainer needs to run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    training_tokens: int = Field(default=2_000_000, gt=0, description="Activations (tokens) to train on.")
    train_batch_size_tokens: int = Field(
        default=4096, gt=0,
        description="Activations per training step (under torchrun: the global batch, split over the ranks).",
    )
    lr: float = Field(default=3e-4, gt=0, description="Adam learning rate.")
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.999, ge=0, lt=1)
    lr_scheduler_name: Literal["constant", "cosineannealing", "cosineannealingwarmrestarts"] = Field(
        default="constant",
        description="Main phase of the LR schedule (between warm-up and decay); cosineannealingwarmrestarts "
        "runs n_restart_cycles cosine cycles, each from lr down to lr_end.",
    )
    lr_warm_up_steps: int = Field(default=0, ge=0, description="Linear LR warm-up from lr/W to lr.")
    lr_end: float | None = Field(
        default=None, ge=0, description="Where cosine annealing ends and the final decay starts (None: lr/10)."
    )
    lr_decay_steps: int = Field(default=0, ge=0, description="Final linear LR decay to 0 over this many steps.")
    n_restart_cycles: int = Field(
        default=1, gt=0,
        description="Cosine cycles of the main phase with lr_scheduler_name='cosineannealingwarmrestarts'.",
    )
    dead_feature_window: int = Field(default=1000, gt=0, description="A latent silent for more steps is dead.")
    feature_sampling_window: int = Field(
        default=2000, gt=0, description="Steps over which firing frequencies are accumulated, then reset."
    )
    n_batches_for_norm_estimate: int = Field(
        default=100, gt=0, description="Batches used to estimate the expected_average_only_in scale."
    )
    n_checkpoints: int = Field(default=0, ge=0, description="Evenly spaced checkpoints during training.")
    checkpoint_path: str | None = Field(
        default="checkpoints",
        description="Folder of the checkpoints (None: none is written, not even when training is interrupted).",
    )
    save_final_checkpoint: bool = False
    output_path: str | None = Field(default="output", description="Where the trained inference SAE is written.")
    resume_from_checkpoint: str | None = Field(default=None, description="A checkpoint folder to continue from.")
    device: str = "cpu"
    seed: int = Field(default=42, ge=0, lt=2**32, description="Seeds torch, Python's random and numpy.")
    max_grad_norm: float = Field(default=1.0, gt=0, description="Gradients are clipped to this global norm.")
    autocast: bool = Field(default=False, description="Run the SAE forward pass under bfloat16 autocast.")
    n_eval_batches: int = Field(default=10, gt=0, description="Fresh batches per evaluation.")
    verbose: bool = True
    distributed_timeout_s: float = Field(
        default=600.0, gt=0,
        description="Under torchrun: seconds a rank waits on the others in a collective before the job fails "
        "(a dead or stalled rank). Must exceed the longest time one rank works alone: loading its model, or "
        "rank 0 writing a checkpoint.",
    )
    distributed_sharding: Literal["auto", "slice", "source"] = Field(
        default="auto",
        description="Under torchrun: 'slice' = every rank draws each global batch and keeps its rows (exactly the "
        "single-process batches); 'source' = each rank's source serves its own share (shard_for_rank); "
        "'auto' = 'source' where the source supports it, else 'slice'.",
    )
    ddp_find_unused_parameters: bool = Field(
        default=False,
        description="Under torchrun: let DDP allow parameters without a gradient on some steps (a per-step graph "
        "walk); only for training recipes that need it.",
    )
    optimizer_implementation: Literal["auto", "fused", "foreach", "for_loop"] = Field(
        default="auto",
        description="Which torch Adam kernel runs the (identical) update: 'auto' = fused on CUDA and CPU (the "
        "fastest there; docs/training_fast_paths.md), torch's default elsewhere.",
    )
    tune_malloc: bool = Field(
        default=False,
        description="On CPU under glibc: raise malloc's mmap and trim thresholds once per process, so the large "
        "[batch, d_sae] buffers of each step are reused instead of page-faulted in fresh: faster dense steps, "
        "but a larger peak memory (freed memory is kept; docs/training_fast_paths.md). It changes malloc for the "
        "whole process, so it is off unless asked for; `saecore train` turns it on. Does nothing on CUDA or "
        "without glibc.",
    )
    accelerator_support_route: bool = Field(
        default=False,
        description="On a device other than the CPU (CUDA), let BatchTopK and Matryoshka BatchTopK steps run over "
        "their selection's support, as they do on CPU; their density is k/d_sae by construction, so no count is "
        "read back. Off: dense steps there, since the crossover has not been measured on a GPU "
        "(docs/training_fast_paths.md, \"Devices\").",
    )
    compile_training_step: bool = Field(
        default=False,
        description="Run the training forward pass (and its backward) through torch.compile: faster dense steps "
        "after seconds of compiling, no gain for TopK. Needs a C++ compiler on CPU, Triton on CUDA "
        "(docs/training_fast_paths.md).",
    )
    compile_mode: str | None = Field(
        default=None, description="torch.compile's mode for the training step (None: its default; e.g. max-autotune)."
    )
    compile_backend: str = Field(
        default="inductor",
        description="torch.compile's backend for the training step; 'eager' only traces (no C++ compiler needed), "
        "which checks that the step compiles without building kernels.",
    )

    @field_validator("checkpoint_path", "output_path", "resume_from_checkpoint", mode="before")
    @classmethod
    def _paths_as_strings(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("lr_scheduler_name", mode="before")
    @classmethod
    def _scheduler_name_any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _schedule_fits(self) -> TrainerConfig:
        if self.training_tokens < self.train_batch_size_tokens:
            raise ValueError(
                f"training_tokens ({self.training_tokens}) is less than train_batch_size_tokens "
                f"({self.train_batch_size_tokens}), so not even one step would run; raise training_tokens "
                "or lower train_batch_size_tokens"
            )
        if self.checkpoint_path is None and (self.n_checkpoints > 0 or self.save_final_checkpoint):
            raise ValueError(
                f"checkpoint_path=None writes no checkpoint, but n_checkpoints={self.n_checkpoints} and "
                f"save_final_checkpoint={self.save_final_checkpoint} ask for some; set checkpoint_path to a folder"
            )
        steps = self.total_training_steps
        if self.lr_warm_up_steps + self.lr_decay_steps > steps:
            raise ValueError(
                f"lr_warm_up_steps ({self.lr_warm_up_steps}) + lr_decay_steps ({self.lr_decay_steps}) exceed "
                f"the {steps} training steps (training_tokens // train_batch_size_tokens)"
            )
        main_steps = steps - self.lr_warm_up_steps - self.lr_decay_steps
        if self.lr_scheduler_name == "cosineannealingwarmrestarts" and self.n_restart_cycles > main_steps:
            raise ValueError(
                f"n_restart_cycles={self.n_restart_cycles} exceeds the {main_steps} steps between warm-up and decay; "
                "each cosine cycle needs at least one step"
            )
        return self

    @property
    def total_training_steps(self) -> int:
        return self.training_tokens // self.train_batch_size_tokens

    @property
    def total_training_tokens(self) -> int:
        """Tokens actually trained on: whole batches only."""
        return self.total_training_steps * self.train_batch_size_tokens

    @property
    def resolved_lr_end(self) -> float:
        return self.lr / 10 if self.lr_end is None else self.lr_end
