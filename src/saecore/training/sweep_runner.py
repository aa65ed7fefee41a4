"""The sweep runner: one source, N SAEs, each saved as if it had been trained alone.

``SAESweepRunner(SAESweepConfig(...)).run()`` builds the source once, gives each SAE
the columns of its stream, seeds torch, ``random`` and numpy with the shared seed before
building each SAE (so an SAE starts from the weights its solo run would), trains them
together with :class:`SweepTrainer`, and writes each to its own ``output_path`` with its
own runner_cfg.json. Checkpoints go to ``{checkpoint_path}/{n_tokens}/{name}/``;
``resume_from_checkpoint`` names the ``{checkpoint_path}/{n_tokens}`` folder.

A :class:`TrainingRunner` is a sweep of one (``single=True``): its checkpoints go
straight to ``{checkpoint_path}/{n_tokens}/`` and its messages name no SAE. Each SAE is
built, saved, logged to wandb (one run per SAE) and summarised by its
:class:`~saecore.training.member_run.MemberRun`; the loop is shared.

Before the first step (before the source is even built) the run claims its folders:
every output folder and the checkpoint folder are created, checked to be writable, and
locked for this run (``run_lock``), and unfinished checkpoint writes left there by killed
runs are removed; once the SAEs exist, the free space their saves need is checked. Any
failure there ends the run at once, naming the path. The folders are released when the
run ends, however it ends.

Under torchrun, ``sae_placement`` decides where the SAEs live. ``replicate``: every rank
trains every SAE data-parallel, and rank 0 logs and saves. ``partition``: rank r builds,
trains, checkpoints, logs and saves only its SAEs (``SAESweepConfig.members_of_rank``),
each with a single-process trainer on whole global batches
(``saecore.distributed.partition``); ``run()`` returns this rank's SAEs, and every rank
gets every SAE's summary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO, TypeVar

from saecore.distributed.context import DistributedContext, init_from_env, shutdown
from saecore.distributed.partition import partition_handout
from saecore.distributed.sharding import choose_sharding
from saecore.errors import ConfigError, SaecoreError
from saecore.sources.base import ActivationSource
from saecore.training.coder_columns import check_pair_width
from saecore.training.errors import TrainingInterruptedError
from saecore.training.member_run import MemberRun, OutputNotSavedError
from saecore.training.rng import seed_everything
from saecore.training.run_folders import (
    ADAM_COPIES,
    METADATA_BYTES,
    claim_folders,
    is_stale_write,
    release_folders,
    remove_stale_writes,
    require_free_space,
    state_bytes,
)
from saecore.training.run_lock import RunFolderLock
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


T = TypeVar("T")


class SAESweepRunner:
    """Train every SAE of ``cfg`` on ``source`` (default: built from the shared ``source`` config).

    After ``run()``, ``summaries`` maps each SAE's name to its final numbers. ``single``
    makes this the run of one SAE (see the module docstring). ``start_from`` maps SAE names
    to training SAEs to continue training (fine-tuning) instead of building fresh ones.
    """

    def __init__(
        self,
        cfg: SAESweepConfig,
        source: ActivationSource | None = None,
        *,
        progress_stream: TextIO | None = None,
        single: bool = False,
        start_from: Mapping[str, TrainingSAE[Any]] | None = None,
    ) -> None:
        if single and len(cfg.members) != 1:
            raise ValueError(f"a single run trains one SAE, but the config has {len(cfg.members)}")
        self.cfg = cfg
        self.source = source
        self.progress_stream = progress_stream
        self.single = single
        self.start_from = dict(start_from or {})
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
            result = self._run_in_claimed_folders()
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

    @property
    def saves_here(self) -> bool:
        """Whether this process writes its SAEs (rank 0, or every rank of a partitioned sweep)."""
        return self.partitioned or self.distributed.is_main

    # -- folders -------------------------------------------------------------------------
    def _run_in_claimed_folders(self) -> dict[str, TrainingSAE[Any]]:
        locks = self._agreed(self._claim_folders, self.distributed.is_main) or []
        try:
            return self._run()
        finally:
            release_folders(locks)

    def _claim_folders(self) -> list[RunFolderLock]:
        """Lock every output folder and the checkpoint folder; clear killed runs' unfinished checkpoint writes."""
        first = self.cfg.first
        outputs = [(Path(m.run.output_path), "output_path") for m in self.cfg.members if m.run.output_path is not None]
        checkpoints = Path(first.checkpoint_path) if first.checkpoint_path is not None else None
        locks = claim_folders([*outputs, *([(checkpoints, "checkpoint_path")] if checkpoints is not None else [])])
        if checkpoints is not None:
            remove_stale_writes(checkpoints)
        resume = first.resume_from_checkpoint
        if resume is not None and is_stale_write(Path(resume)):
            release_folders(locks)
            raise ConfigError(f"resume_from_checkpoint={resume!r} is an unfinished checkpoint write (its run was "
                              "killed while writing it); resume from a complete checkpoint folder")
        return locks

    def _check_room(self, runs: list[MemberRun], saes: list[TrainingSAE[Any]]) -> None:
        """Fail before the first step when a save this run will make cannot fit on its disk."""
        for run, sae in zip(runs, saes):
            if run.cfg.output_path is not None:
                self._require_room(Path(run.cfg.output_path), run.output_bytes(sae), "output_path")
        first = self.cfg.first
        if first.checkpoint_path is not None and (first.n_checkpoints > 0 or first.save_final_checkpoint):
            needed = sum(ADAM_COPIES * state_bytes(sae) for sae in saes) + METADATA_BYTES
            self._require_room(Path(first.checkpoint_path), needed, "checkpoint_path")

    @staticmethod
    def _require_room(folder: Path, needed: int, what: str) -> None:
        try:
            require_free_space(folder, needed, "the trained SAE" if what == "output_path" else "a checkpoint")
        except OSError as error:
            raise ConfigError(f"{what}={str(folder)!r}: {error.strerror}; free space there or choose another "
                              "folder") from None

    def _agreed(self, action: Callable[[], T], acts_here: bool) -> T | None:
        """``action()`` where ``acts_here``; if it fails on any rank, every rank raises (none waits on the others)."""
        result: T | None = None
        error: SaecoreError | None = None
        if acts_here:
            try:
                result = action()
            except SaecoreError as failure:
                error = failure
        if self.distributed.is_distributed:
            elsewhere = next((m for m in self.distributed.all_gather_objects(str(error) if error else None) if m), None)
            if error is None and elsewhere is not None:
                raise SaecoreError(elsewhere)
        if error is not None:
            raise error
        return result

    # -- the run -------------------------------------------------------------------------
    def _run(self) -> dict[str, TrainingSAE[Any]]:
        members = self.cfg.members
        own = [members[index] for index in self.cfg.members_of_rank(self.distributed.rank,
                                                                    self.distributed.world_size)]
        runs = [MemberRun(member.run, self.distributed) for member in own]
        seed = self.cfg.first.seed
        seed_everything(seed)
        owns_source = self.source is None
        source = self.source if self.source is not None else runs[0].build_source()
        loggers: list[WandbLogger | None] = []
        try:
            columns = dict(zip((member.name for member in members), stream_columns(source, members)))
            self._check_widths(source, columns)
            saes = []
            for member, run in zip(own, runs):
                seed_everything(seed)
                saes.append(run.build_sae(source, member.stream, self.start_from.get(member.name)))
            self._agreed(lambda: self._check_room(runs, saes), self.saves_here)
            self.trainer = self._build_trainer(source, own, runs, saes, [columns[m.name] for m in own], loggers)
            self._resume_if_asked()
            self.trainer.fit()
            run_configs = [run.cfg.to_dict() for run in runs]
            outputs, save_errors = self._save_outputs(runs, saes, run_configs)
            self.distributed.barrier()
            for run, sae, trainer, logger, output, run_config in zip(
                runs, saes, self.trainer.trainers, loggers, outputs, run_configs
            ):
                run.summary = run.summarise(sae, trainer, source)
                if logger is not None:
                    run.log_final(logger, output, sae, run_config)
            self.summaries = self._every_summary(own, runs)
            if save_errors:
                raise save_errors[0] if len(save_errors) == 1 else SaecoreError("; ".join(map(str, save_errors)))
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
        return {member.name: sae for member, sae in zip(own, saes)}

    def _check_widths(self, source: ActivationSource, columns: dict[str, slice | None]) -> None:
        first = self.cfg.first
        if self.single and first.sae.PREDICTS_TARGET:
            check_pair_width(first.sae, source)
        elif self.single and first.sae.d_in != source.d_in:
            raise ConfigError(
                f"sae.d_in = {first.sae.d_in}, but the source ({type(source).__name__}) serves activations "
                f"of width {source.d_in}; set sae.d_in to {source.d_in}"
            )
        source.check_batch_size(first.train_batch_size_tokens)
        for member in self.cfg.members:
            cols = columns[member.name]
            width = source.d_in if cols is None else cols.stop - cols.start
            if member.run.sae.PREDICTS_TARGET:
                target = source.target_width if cols is None else source.stream_target_width(str(member.stream))
                check_pair_width(member.run.sae, source, width, f"sweep SAE {member.name!r}", target)
            elif member.run.sae.d_in != width:
                raise ConfigError(f"sweep SAE {member.name!r}: sae.d_in = {member.run.sae.d_in}, but its stream "
                                  f"serves activations of width {width}; set sae.d_in to {width}")

    def _save_outputs(
        self, runs: list[MemberRun], saes: list[TrainingSAE[Any]], run_configs: list[dict[str, Any]]
    ) -> tuple[list[Path | None], list[OutputNotSavedError]]:
        """Save every SAE this process writes; one that cannot be saved does not stop the others'."""
        assert self.trainer is not None
        outputs: list[Path | None] = []
        errors: list[OutputNotSavedError] = []
        for run, sae, trainer, run_config in zip(runs, saes, self.trainer.trainers, run_configs):
            output = None
            if self.saves_here:
                try:
                    output = run.save_output(sae, trainer, run_config)
                except OutputNotSavedError as error:
                    errors.append(error)
            outputs.append(output)
        return outputs, errors

    def _every_summary(self, own: list[SweepMember], runs: list[MemberRun]) -> dict[str, TrainingSummary]:
        """Every SAE's summary in sweep order; a partitioned sweep gathers them from their ranks."""
        summaries = {member.name: run.summary for member, run in zip(own, runs) if run.summary is not None}
        if self.partitioned:
            for rank_summaries in self.distributed.all_gather_objects(summaries):
                summaries.update(rank_summaries)
        return {member.name: summaries[member.name] for member in self.cfg.members if member.name in summaries}

    def _build_trainer(
        self,
        source: ActivationSource,
        own: list[SweepMember],
        runs: list[MemberRun],
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
        shared = SharedBatches(handout, len(runs))
        several = len(self.cfg.members) > 1
        trainers = []
        for index, (member, run, sae, cols) in enumerate(zip(own, runs, saes, columns)):
            run_config = run.cfg.to_dict()
            logs_here = self.partitioned or self.distributed.is_main
            logger = run.start_wandb(run_config, alongside_others=several) if logs_here else None
            loggers.append(logger)
            trainers.append(SAETrainer(
                run.cfg.trainer_config(), sae, source,
                logging=run.cfg.logger, metrics_logger=logger, run_config=run_config,
                progress_stream=self.progress_stream, distributed=trainer_context,
                batches=shared.view(index, cols), checkpoint_subfolder=None if self.single else member.name,
            ))
        return SweepTrainer(trainers, [member.name for member in own], shared, group=self.distributed)

    def _resume_if_asked(self) -> None:
        folder = self.cfg.first.resume_from_checkpoint
        if folder is None:
            return
        assert self.trainer is not None
        if self.single:
            self.trainer.lead.load_checkpoint(folder)
            return
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
