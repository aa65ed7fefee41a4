"""The sweep runner: one source, N SAEs, each saved as if it had been trained alone.

``SAESweepRunner(SAESweepConfig(...)).run()`` builds the source once, gives each SAE
the columns of its stream, seeds torch, ``random`` and numpy with the shared seed before
building each SAE (so an SAE starts from the weights its solo run would), trains them
together with :class:`SweepTrainer`, and writes each to its own ``output_path`` with its
own runner_cfg.json. Checkpoints go to ``{checkpoint_path}/{n_tokens}/{name}/``;
``resume_from_checkpoint`` names the ``{checkpoint_path}/{n_tokens}`` folder.

Each SAE uses the same code as a solo :class:`TrainingRunner` for building, saving,
logging to wandb (one run per SAE) and summarising; only the loop is shared.

Under torchrun, ``sae_placement`` decides where the SAEs live. ``replicate``: every rank
trains every SAE data-parallel, and rank 0 logs and saves. ``partition``: rank r builds,
trains, checkpoints, logs and saves only its SAEs (``SAESweepConfig.members_of_rank``),
each with a single-process trainer on whole global batches
(``saecore.distributed.partition``); ``run()`` returns this rank's SAEs, and every rank
gets every SAE's summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from saecore.distributed.context import DistributedContext, init_from_env, shutdown
from saecore.distributed.partition import partition_handout
from saecore.distributed.sharding import choose_sharding
from saecore.errors import ConfigError
from saecore.sources.base import ActivationSource
from saecore.training.errors import TrainingInterruptedError
from saecore.training.rng import seed_everything
from saecore.training.runner import TrainingRunner
from saecore.training.shared_stream import SharedBatches
from saecore.training.summary import TrainingSummary
from saecore.training.sweep_config import SAESweepConfig, SweepMember
from saecore.training.sweep_trainer import SweepTrainer
from saecore.training.trainer import SAETrainer
from saecore.training.wandb_logger import WandbLogger
from saecore.training_sae import TrainingSAE


def stream_columns(source: ActivationSource, members: list[SweepMember]) -> list[slice | None]:
    """Each member's columns of a batch (None: the whole batch, for a single-stream source)."""
    streams = source.streams()
    offsets: dict[str, slice] = {}
    start = 0
    for name, width in streams.items():
        offsets[name] = slice(start, start + width)
        start += width
    if start != source.d_in:
        raise ConfigError(f"the source {type(source).__name__} serves d_in={source.d_in} but its streams "
                          f"{streams} add up to {start}; this is a bug in the source")
    columns: list[slice | None] = []
    for member in members:
        if member.stream is None:
            if len(streams) > 1:
                raise ConfigError(f"sweep SAE {member.name!r}: the source serves several streams "
                                  f"({', '.join(streams)}); set its 'stream' to one of them")
            columns.append(None)
        elif member.stream not in streams:
            raise ConfigError(f"sweep SAE {member.name!r}: stream={member.stream!r} is not served by the source; "
                              f"its streams are {', '.join(streams)}")
        else:
            columns.append(None if len(streams) == 1 else offsets[member.stream])
    return columns


class SAESweepRunner:
    """Train every SAE of ``cfg`` on ``source`` (default: built from the shared ``source`` config).

    After ``run()``, ``summaries`` maps each SAE's name to its final numbers.
    """

    def __init__(
        self, cfg: SAESweepConfig, source: ActivationSource | None = None, *, progress_stream: TextIO | None = None
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.progress_stream = progress_stream
        self.summaries: dict[str, TrainingSummary] = {}
        self.trainer: SweepTrainer | None = None
        self.distributed = DistributedContext()

    @property
    def is_main_process(self) -> bool:
        return self.distributed.is_main

    def run(self) -> dict[str, TrainingSAE[Any]]:
        first = self.cfg.first
        self.distributed, owns_group = init_from_env(first.device, first.distributed_timeout_s)
        together = False
        try:
            result = self._run()
            together = True
            return result
        except TrainingInterruptedError:
            together = True  # every rank agreed to stop at this step
            raise
        finally:
            for trainer in self.trainer.trainers if self.trainer is not None else []:
                trainer.release_data_parallel()
            shutdown(owns_group, together=together)

    @property
    def partitioned(self) -> bool:
        """Whether each rank trains only its own SAEs (``sae_placement='partition'`` in a job of several ranks)."""
        return self.cfg.sae_placement == "partition" and self.distributed.is_distributed

    def _run(self) -> dict[str, TrainingSAE[Any]]:
        members = self.cfg.members
        own = [members[index] for index in self.cfg.members_of_rank(self.distributed.rank,
                                                                    self.distributed.world_size)]
        runners = [TrainingRunner(member.run, progress_stream=self.progress_stream) for member in own]
        for runner in runners:
            runner.distributed = self.distributed
        seed = self.cfg.first.seed
        seed_everything(seed)
        owns_source = self.source is None
        source = self.source if self.source is not None else runners[0].build_source()
        loggers: list[WandbLogger | None] = []
        try:
            columns = dict(zip((member.name for member in members), stream_columns(source, members)))
            source.check_batch_size(self.cfg.first.train_batch_size_tokens)
            for member in members:
                cols = columns[member.name]
                width = source.d_in if cols is None else cols.stop - cols.start
                if member.run.sae.d_in != width:
                    raise ConfigError(f"sweep SAE {member.name!r}: sae.d_in = {member.run.sae.d_in}, but its stream "
                                      f"serves activations of width {width}; set sae.d_in to {width}")
            saes = []
            for member, runner in zip(own, runners):
                seed_everything(seed)
                saes.append(runner.build_sae(source, member.stream))
            self.trainer = self._build_trainer(source, own, runners, saes, [columns[m.name] for m in own], loggers)
            self._resume_if_asked()
            self.trainer.fit()
            saves_here = self.partitioned or self.distributed.is_main
            run_configs = [runner.cfg.to_dict() for runner in runners]
            outputs = [
                runner.save_output(sae, trainer, run_config) if saves_here else None
                for runner, sae, trainer, run_config in zip(runners, saes, self.trainer.trainers, run_configs)
            ]
            self.distributed.barrier()
            for runner, sae, trainer, logger, output, run_config in zip(
                runners, saes, self.trainer.trainers, loggers, outputs, run_configs
            ):
                runner.summary = runner.summarise(sae, trainer, source)
                if logger is not None:
                    runner.log_final(logger, output, sae, run_config)
        except BaseException:
            for logger in loggers:
                if logger is not None:
                    logger.finish(exit_code=1)
            raise
        finally:
            if owns_source:
                source.close()
        for logger in loggers:
            if logger is not None:
                logger.finish()
        self.summaries = self._every_summary(own, runners)
        return {member.name: sae for member, sae in zip(own, saes)}

    def _every_summary(self, own: list[SweepMember], runners: list[TrainingRunner]) -> dict[str, TrainingSummary]:
        """Every SAE's summary in sweep order; a partitioned sweep gathers them from their ranks."""
        summaries = {member.name: runner.summary for member, runner in zip(own, runners) if runner.summary is not None}
        if self.partitioned:
            for rank_summaries in self.distributed.all_gather_objects(summaries):
                summaries.update(rank_summaries)
        return {member.name: summaries[member.name] for member in self.cfg.members if member.name in summaries}

    def _build_trainer(
        self,
        source: ActivationSource,
        own: list[SweepMember],
        runners: list[TrainingRunner],
        saes: list[TrainingSAE[Any]],
        columns: list[slice | None],
        loggers: list[WandbLogger | None],
    ) -> SweepTrainer:
        """This rank's SAEs' trainers on one shared stream.

        Partitioned, each trainer is a single-process one (no DDP: its SAE lives on this
        rank only) and logs from this rank; the whole job is the sweep's ``group``.
        """
        first = self.cfg.first
        if self.partitioned:
            handout = partition_handout(source, self.distributed, first.distributed_sharding,
                                        first.train_batch_size_tokens)
            trainer_context = DistributedContext()
        else:
            handout = choose_sharding(source, self.distributed, first.distributed_sharding,
                                      first.train_batch_size_tokens)
            trainer_context = self.distributed
        shared = SharedBatches(handout, len(runners))
        several = len(self.cfg.members) > 1
        trainers = []
        for index, (member, runner, sae, cols) in enumerate(zip(own, runners, saes, columns)):
            run_config = runner.cfg.to_dict()
            logs_here = self.partitioned or self.distributed.is_main
            logger = runner.start_wandb(run_config, alongside_others=several) if logs_here else None
            loggers.append(logger)
            trainers.append(SAETrainer(
                runner.cfg.trainer_config(), sae, source,
                logging=runner.cfg.logger, metrics_logger=logger, run_config=run_config,
                progress_stream=self.progress_stream, distributed=trainer_context,
                batches=shared.view(index, cols), checkpoint_subfolder=member.name,
            ))
        return SweepTrainer(trainers, [member.name for member in own], shared, group=self.distributed)

    def _resume_if_asked(self) -> None:
        folder = self.cfg.first.resume_from_checkpoint
        if folder is None:
            return
        assert self.trainer is not None
        missing = [name for name in self.trainer.names if not (Path(folder) / name).is_dir()]
        if missing:
            raise ConfigError(
                f"resume_from_checkpoint={folder!r}: a sweep resumes from the folder holding one checkpoint per SAE, "
                f"but {', '.join(repr(name) for name in missing)} {'is' if len(missing) == 1 else 'are'} missing there"
            )
        for name, trainer in zip(self.trainer.names, self.trainer.trainers):
            trainer.load_checkpoint(Path(folder) / name)
        steps = {trainer.n_training_steps for trainer in self.trainer.trainers}
        if self.partitioned:  # every rank's SAEs must have been checkpointed together
            low, high = self.distributed.min_int(min(steps)), -self.distributed.min_int(-max(steps))
            steps |= {low, high}
        if len(steps) != 1:
            raise ConfigError(f"resume_from_checkpoint={folder!r}: the SAEs' checkpoints are at different steps "
                              f"({sorted(steps)}); they must come from one sweep checkpoint")
