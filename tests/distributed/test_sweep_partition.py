"""A sweep partitioned over 2 ranks (gloo) trains each SAE as the single-process sweep does.

With ``sae_placement="partition"`` rank r trains SAEs r, r+2, ... alone, on whole global
batches. Where sources shard themselves each rank draws half of every batch and the
ranks all-gather them, so the single-process reference reads the concatenation of both
ranks' streams (rank 0's rows first); a source that cannot shard is drawn whole on
every rank, so the reference is the plain sweep. Only the middle SAE scales its inputs,
so the rank that owns the other two must still draw the scale-estimate batches. Each SAE
takes single-process steps on the same batches, so the weights agree bitwise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from distributed_helpers import max_weight_difference, start_ranks, synthetic_config, torchrun, write_spec
from rank_worker import INTERRUPTED_EXIT_CODE, ScriptedSource

from saecore.cli.main import main as saecore_main
from saecore.errors import ConfigError
from saecore.sources.synthetic import SyntheticSourceConfig
from saecore.testing import RanksInOneProcess
from saecore.training import SAESweepConfig, SAESweepRunner
from saecore.training.checkpoint import SOURCE_STATE_FILENAME

WORLD_SIZE = 2
B = 32
NAMES = ("a", "b", "c")


def _sweep(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """Three SAEs (TopK, scaled standard, wider TopK with its own lr) as a sweep file's mapping."""
    config = synthetic_config(tmp_path, {"architecture": "topk", "k": 3}, logger={"wandb_log_frequency": 5},
                              sae_placement="partition", **overrides)
    config["sweep"] = [
        {"name": "a"},
        {"name": "b", "sae": {"architecture": "standard", "l1_coefficient": 0.3,
                              "normalize_activations": "expected_average_only_in"}},
        {"name": "c", "sae": {"k": 5, "d_sae": 48}, "lr": 5e-3},
    ]
    return config


def _run(spec: Path) -> list[int]:
    processes = start_ranks(spec, WORLD_SIZE)
    for process in processes:
        process.communicate(timeout=90)
    return [process.returncode for process in processes]


def _assert_same_saes(output: Path, reference: Path) -> None:
    """Bitwise: each SAE takes single-process steps on the same batches (no gradient averaging to round)."""
    for name in NAMES:
        differences = max_weight_difference(output / name, reference / name)
        assert max(differences.values()) == 0.0, (name, differences)


def test_ranks_own_round_robin_shares_and_fewer_saes_than_ranks_is_refused(tmp_path: Path) -> None:
    cfg = SAESweepConfig.from_dict(_sweep(tmp_path))
    assert cfg.sae_placement == "partition"
    assert [cfg.members_of_rank(rank, 2) for rank in range(2)] == [[0, 2], [1]]
    assert [cfg.members_of_rank(rank, 3) for rank in range(3)] == [[0], [1], [2]]
    assert cfg.members_of_rank(0, 1) == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"sae_placement='partition'.* 4 ranks.* 3 SAEs"):
        cfg.members_of_rank(0, 4)
    replicated = SAESweepConfig.from_dict({**_sweep(tmp_path), "sae_placement": "replicate"})
    assert replicated.members_of_rank(1, 4) == [0, 1, 2]
    with pytest.raises(ConfigError, match="sae_placement"):
        SAESweepConfig.from_dict({**_sweep(tmp_path), "sae_placement": "scatter"})


def test_gathered_shards_match_one_process_and_a_sigterm_to_one_rank_resumes_exactly(tmp_path: Path) -> None:
    config = _sweep(tmp_path)
    # Rank 1 alone is signalled during step 12 (after 2 scale batches); the ranks agree to stop at log step 15.
    interrupted = write_spec(tmp_path / "interrupted", config, sweep=True, shardable=True,
                             fault={"rank": 1, "batch": 2 + 12, "signal": "SIGTERM"})
    assert _run(interrupted) == [INTERRUPTED_EXIT_CODE, INTERRUPTED_EXIT_CODE]
    checkpoint = tmp_path / "checkpoints" / str(15 * B)
    assert sorted(child.name for child in checkpoint.iterdir()) == list(NAMES)
    states = {name: torch.load(checkpoint / name / SOURCE_STATE_FILENAME, weights_only=True) for name in NAMES}
    for name in NAMES:  # each owner wrote both ranks' positions, and they agree across owners
        positions = [state["generator_state"] for state in states[name]["rank_states"]]
        assert len(positions) == WORLD_SIZE and not torch.equal(positions[0], positions[1])
        for rank, position in enumerate(positions):
            assert torch.equal(position, states["a"]["rank_states"][rank]["generator_state"])

    resumed = write_spec(tmp_path / "resumed", {**config, "resume_from_checkpoint": str(checkpoint)},
                         sweep=True, shardable=True)
    assert _run(resumed) == [0, 0]
    results = [json.loads((tmp_path / "resumed" / f"rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    assert [result["trained"] for result in results] == [["a", "c"], ["b"]]
    assert [result["summaries"] for result in results] == [list(NAMES), list(NAMES)]

    reference = SAESweepConfig.from_dict(_sweep(tmp_path / "reference"))
    source_cfg = reference.first.source
    assert isinstance(source_cfg, SyntheticSourceConfig)
    one_process = RanksInOneProcess(
        lambda: ScriptedSource(source_cfg, seed=reference.first.seed, shardable=True), WORLD_SIZE
    )
    SAESweepRunner(reference, source=one_process).run()
    _assert_same_saes(tmp_path / "output", tmp_path / "reference" / "output")


def test_a_source_that_cannot_shard_is_drawn_whole_on_every_rank_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep_file, reference_file = tmp_path / "sweep.json", tmp_path / "reference.json"
    sweep_file.write_text(json.dumps(_sweep(tmp_path)))
    reference_file.write_text(json.dumps(_sweep(tmp_path / "reference")))

    job = torchrun(["-m", "saecore", "train", "--sweep", str(sweep_file)], cwd=tmp_path)
    assert job.returncode == 0, job.output
    assert all(f"== {name}" in job.output for name in NAMES), job.output  # rank 0 prints every SAE's summary
    assert saecore_main(["train", "--sweep", str(reference_file)]) == 0
    capsys.readouterr()
    _assert_same_saes(tmp_path / "output", tmp_path / "reference" / "output")


def _cli_config(tmp_path: Path) -> dict[str, Any]:
    """``saecore train --config`` settings for TopK and standard trained together on the synthetic source."""
    run = synthetic_config(tmp_path, {})
    source = run.pop("source")
    del source["name"], run["sae"]
    return {**run, "arch": ["topk", "standard"], "source": "synthetic", "source_config": source,
            "sae": {"d_sae": 32, "k": 3, "l1_coefficient": 0.3}}


def test_the_sae_placement_flag_partitions_several_archs_trained_together(tmp_path: Path) -> None:
    """Bitwise equal to one process, which replicating (DDP averages half-batch gradients) is not."""
    config_file, reference_file = tmp_path / "run.json", tmp_path / "reference.json"
    config_file.write_text(json.dumps(_cli_config(tmp_path)))
    reference_file.write_text(json.dumps(_cli_config(tmp_path / "reference")))

    job = torchrun(["-m", "saecore", "train", "--config", str(config_file), "--sae-placement", "partition"],
                   cwd=tmp_path)
    assert job.returncode == 0, job.output
    assert "== topk" in job.output and "== standard" in job.output, job.output
    assert saecore_main(["train", "--config", str(reference_file)]) == 0
    for arch in ("topk", "standard"):
        differences = max_weight_difference(tmp_path / "output" / arch, tmp_path / "reference" / "output" / arch)
        assert max(differences.values()) == 0.0, (arch, differences)


def test_a_killed_rank_fails_the_other_rank_at_its_next_gather(tmp_path: Path) -> None:
    config = _sweep(tmp_path, distributed_timeout_s=4.0)
    spec = write_spec(tmp_path / "crashed", config, sweep=True, shardable=True,
                      fault={"rank": 1, "batch": 2 + 10, "signal": "SIGKILL"})
    rank0, rank1 = start_ranks(spec, WORLD_SIZE)
    _, stderr = rank0.communicate(timeout=60)
    exited_at = time.time()
    rank1.communicate(timeout=60)
    assert rank0.returncode not in (0, INTERRUPTED_EXIT_CODE) and rank1.returncode != 0
    assert "RankFailedError: rank 0 of 2 failed after step" in stderr, stderr
    assert exited_at - float((tmp_path / "crashed" / "fault_time").read_text()) < 4.0 + 10.0
    assert not (tmp_path / "output").exists()
