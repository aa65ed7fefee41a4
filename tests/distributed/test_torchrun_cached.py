"""The ``cached`` source under torchrun: each rank reads its own shard files of one cache.

``torchrun --nproc_per_node 2 -m saecore train --source cached`` must train the SAE one
process trains on the concatenation of the two ranks' batches (rank 0's rows first: what
DDP's gradient average and the gathered evaluation batches amount to), its checkpoint
must hold each rank's position over that rank's own shard files, and resuming the
checkpoint at 2 ranks must land on the uninterrupted run's weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from distributed_helpers import max_weight_difference, torchrun

from saecore.sources.cached import CachedActivationsWriter, CachedSource, CachedSourceConfig, read_cache_info
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig
from saecore.testing import RanksInOneProcess
from saecore.training import TrainingRunner, TrainingRunnerConfig
from saecore.training.checkpoint import SOURCE_STATE_FILENAME

WORLD_SIZE = 2
D_IN = 16
N_SHARDS = 6  # three per rank: with buffer_shards=2 each rank loads a group of two shards, then one
SHARD_ROWS = 128
BATCH = 32
STEPS = 16  # each rank serves 2 norm + 16 training + 2 eval batches of 16 rows: 320 of its 384, no second epoch
TOLERANCE = 1e-5


def write_cache(folder: Path) -> Path:
    """Synthetic activations written by the core's cache writer, one file per ``SHARD_ROWS`` rows."""
    source = SyntheticSource(SyntheticSourceConfig(d_in=D_IN, n_features=24, avg_active_features=3.0), seed=0)
    with CachedActivationsWriter(folder, D_IN, shard_size_tokens=SHARD_ROWS,
                                 metadata={"model_name": "synthetic-for-a-test"}) as writer:
        for _ in range(N_SHARDS):
            writer.append(source.next_batch(SHARD_ROWS))
    assert len(read_cache_info(folder).shards) == N_SHARDS
    return folder


def train_flags(cache: Path, folder: Path) -> list[str]:
    return [
        "train", "--arch", "topk", "--source", "cached", "--path", str(cache), "--k", "3", "--d-sae", "32",
        "--lr", "0.01", "--training-tokens", str(STEPS * BATCH), "--train-batch-size-tokens", str(BATCH),
        "--normalize-activations", "expected_average_only_in", "--n-batches-for-norm-estimate", "2",
        "--n-eval-batches", "2", "--dead-feature-window", "4", "--feature-sampling-window", "6",
        "--lr-scheduler-name", "cosineannealing", "--lr-warm-up-steps", "3", "--n-checkpoints", "1",
        "--output-path", str(folder / "output"), "--checkpoint-path", str(folder / "checkpoints"),
        "--verbose", "false",
    ]


def test_two_ranks_on_their_own_shard_files_train_the_concatenated_run_and_resume_exactly(tmp_path: Path) -> None:
    cache = write_cache(tmp_path / "cache")
    parallel = tmp_path / "parallel"
    job = torchrun(["-m", "saecore", *train_flags(cache, parallel)], cwd=tmp_path)
    assert job.returncode == 0, job.output

    # The one checkpoint (half-way) holds each rank's position over its own shard files.
    checkpoint = parallel / "checkpoints" / str(STEPS // 2 * BATCH)
    assert [child.name for child in (parallel / "checkpoints").iterdir()] == [checkpoint.name]
    rank_states = torch.load(checkpoint / SOURCE_STATE_FILENAME, weights_only=True)["rank_states"]
    assert [(state["rank"], state["world_size"]) for state in rank_states] == [(0, 2), (1, 2)]
    read = [sorted(state["shard_order"]) for state in rank_states]
    assert read == [list(range(rank, N_SHARDS, WORLD_SIZE)) for rank in range(WORLD_SIZE)]

    saved = json.loads((parallel / "output" / "runner_cfg.json").read_text())
    reference = TrainingRunnerConfig.from_dict(
        {**saved, "output_path": str(tmp_path / "reference"), "checkpoint_path": str(tmp_path / "unused"),
         "n_checkpoints": 0}
    )
    assert isinstance(reference.source, CachedSourceConfig)
    one_process = RanksInOneProcess(
        lambda: CachedSource(reference.source, seed=reference.seed), WORLD_SIZE
    )
    TrainingRunner(reference, source=one_process).run()
    differences = max_weight_difference(parallel / "output", tmp_path / "reference")
    assert max(differences.values()) <= TOLERANCE, differences
    metadata = json.loads((parallel / "output" / "cfg.json").read_text())["metadata"]
    assert metadata["model_name"] == "synthetic-for-a-test"  # the cache's provenance reaches the SAE

    resumed = tmp_path / "resumed"
    job = torchrun(["-m", "saecore", *train_flags(cache, resumed), "--resume-from-checkpoint", str(checkpoint)],
                   cwd=tmp_path)
    assert job.returncode == 0, job.output
    differences = max_weight_difference(parallel / "output", resumed / "output")
    assert max(differences.values()) <= TOLERANCE, differences
