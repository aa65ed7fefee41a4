"""Sources that shard themselves: each rank reads its own stream, checkpoints keep every rank's position.

A 2-rank run whose sources shard must equal one process trained on the concatenation of
the two ranks' batches (rank 0's rows first: what DDP's gradient average and the
gathered evaluation batches amount to). The run here is also stopped by a SIGTERM that
reaches rank 1 only: both ranks must stop at the same step, checkpoint once, and the
resumed run must land on the uninterrupted result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from distributed_helpers import max_weight_difference, start_ranks, synthetic_config, write_spec
from rank_worker import INTERRUPTED_EXIT_CODE, ScriptedSource

from saecore.errors import ConfigError
from saecore.sources.synthetic import SyntheticSourceConfig
from saecore.testing import RanksInOneProcess
from saecore.training import SAETrainer, TrainingRunner, TrainingRunnerConfig
from saecore.training.checkpoint import SOURCE_STATE_FILENAME

WORLD_SIZE = 2


def _run(spec: Path) -> list[int]:
    processes = start_ranks(spec, WORLD_SIZE)
    for process in processes:
        process.communicate(timeout=90)
    return [process.returncode for process in processes]


def test_sharded_run_is_the_concatenated_single_process_run_and_resumes_per_rank(tmp_path: Path) -> None:
    config: dict[str, Any] = synthetic_config(
        tmp_path, {"architecture": "topk", "k": 3}, logger={"wandb_log_frequency": 5}
    )
    # Rank 1 alone is signalled during step 12; the ranks agree to stop at the next log step, 15.
    interrupted = write_spec(tmp_path / "interrupted", config, shardable=True,
                             fault={"rank": 1, "batch": 2 + 12, "signal": "SIGTERM"})
    assert _run(interrupted) == [INTERRUPTED_EXIT_CODE, INTERRUPTED_EXIT_CODE]
    checkpoint = tmp_path / "checkpoints" / str(15 * 32)
    assert sorted(child.name for child in (tmp_path / "checkpoints").iterdir()) == [checkpoint.name]
    rank_states = torch.load(checkpoint / SOURCE_STATE_FILENAME, weights_only=True)["rank_states"]
    assert len(rank_states) == WORLD_SIZE
    assert not torch.equal(rank_states[0]["generator_state"], rank_states[1]["generator_state"])

    resumed = write_spec(tmp_path / "resumed", {**config, "resume_from_checkpoint": str(checkpoint)}, shardable=True)
    assert _run(resumed) == [0, 0]

    reference = TrainingRunnerConfig.from_dict({**config, "output_path": str(tmp_path / "reference")})
    assert isinstance(reference.source, SyntheticSourceConfig)
    one_process = RanksInOneProcess(
        lambda: ScriptedSource(reference.source, seed=reference.seed, shardable=True), WORLD_SIZE
    )
    TrainingRunner(reference, source=one_process).run()
    differences = max_weight_difference(tmp_path / "output", tmp_path / "reference")
    assert max(differences.values()) <= 1e-5, differences

    with pytest.raises(ConfigError, match="resume it with 2 ranks"):
        runner_cfg = TrainingRunnerConfig.from_dict(config)
        trainer = SAETrainer(runner_cfg.trainer_config(), _topk(runner_cfg), ScriptedSource(reference.source, seed=1))
        trainer.load_checkpoint(checkpoint)


def _topk(cfg: TrainingRunnerConfig) -> Any:
    from saecore.registry import get_registry

    return get_registry().training_recipe("topk").training_sae_class(cfg.sae)
