"""The runner: one call from a config to a trained SAE on disk.

A run of one SAE is a sweep of one: :class:`TrainingRunner` hands its config to
:class:`~saecore.training.sweep_runner.SAESweepRunner`, which resolves every name once
(the training recipe from ``cfg.sae``, the source from the class of ``cfg.source``),
claims the output and checkpoint folders, seeds torch, Python's ``random`` and numpy
from ``cfg.seed``, builds the SAE, trains it, and writes the inference SAE,
``sparsity.safetensors`` and ``runner_cfg.json`` to ``output_path``. Its checkpoints go
to ``{checkpoint_path}/{n_tokens}/``. Nothing is printed when ``verbose=False``.

Started by torchrun (``WORLD_SIZE`` > 1), it first joins the process group (NCCL on
CUDA, gloo on the CPU, ``distributed_timeout_s``) and leaves it at the end, also after a
failure. Every rank then trains; only rank 0 talks to wandb, prints progress and writes
``output_path``, and the others return once it has. Every rank gets the same ``summary``.
"""

from __future__ import annotations

from typing import Any, TextIO

from saecore.distributed.context import DistributedContext
from saecore.sources.base import ActivationSource
from saecore.training.runner_config import TrainingRunnerConfig
from saecore.training.summary import TrainingSummary
from saecore.training.sweep_config import SAESweepConfig, SweepMember
from saecore.training.sweep_runner import SAESweepRunner
from saecore.training.trainer import SAETrainer
from saecore.training_sae import TrainingSAE

RUN_NAME = "run"
"""The single SAE's name inside its sweep of one (it names no folder)."""


class TrainingRunner:
    """Train the SAE ``cfg.sae`` describes on ``source`` (default: built from ``cfg.source``).

    A source passed in is used as is and left open; one the runner builds is closed at
    the end. ``sae``, when given, is trained (fine-tuned) instead of a fresh SAE built
    from ``cfg.sae``, which must be its config's recipe. After ``run()``, ``summary``
    holds the final numbers and ``trainer`` the trainer that produced them.
    """

    def __init__(
        self,
        cfg: TrainingRunnerConfig,
        source: ActivationSource | None = None,
        *,
        progress_stream: TextIO | None = None,
        sae: TrainingSAE[Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.sae = sae
        self.progress_stream = progress_stream
        self.summary: TrainingSummary | None = None
        self.trainer: SAETrainer | None = None
        self.distributed = DistributedContext()

    @property
    def is_main_process(self) -> bool:
        """False on every rank but 0 of a data-parallel job: those print and write nothing."""
        return self.distributed.is_main

    def run(self) -> TrainingSAE[Any]:
        sweep = SAESweepRunner(
            SAESweepConfig(members=[SweepMember(name=RUN_NAME, run=self.cfg)]),
            self.source, progress_stream=self.progress_stream, single=True,
            start_from={RUN_NAME: self.sae} if self.sae is not None else None,
        )
        try:
            return sweep.run()[RUN_NAME]
        finally:
            self.distributed = sweep.distributed
            self.trainer = sweep.trainer.lead if sweep.trainer is not None else None
            self.summary = sweep.summaries.get(RUN_NAME)
