"""A rank that dies or hangs ends the job within the timeout, and the job resumes from its checkpoint.

Faults are injected by the rank itself at a fixed batch (``rank_worker.ScriptedSource``):
SIGKILL is a crash with no cleanup at all, SIGSTOP freezes the process the way a wedged
rank looks to its peers.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from distributed_helpers import (
    WORKER,
    latest_checkpoint,
    max_weight_difference,
    start_ranks,
    synthetic_config,
    torchrun,
    write_spec,
)

from saecore.training import TrainingRunner, TrainingRunnerConfig

TIMEOUT_S = 4.0
SLACK_S = 10.0  # process exit and teardown on a loaded 2-core machine
TOPK = {"architecture": "topk", "k": 3}


def _fault_time(folder: Path) -> float:
    return float((folder / "fault_time").read_text())


def test_a_killed_rank_fails_the_job_and_the_job_resumes_from_the_last_checkpoint(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, TOPK, n_checkpoints=3, distributed_timeout_s=TIMEOUT_S)
    # 2 norm-estimate batches, then one batch per step: rank 1 dies during step 28, after the checkpoint at step 20.
    crashed = tmp_path / "crashed"
    spec = write_spec(crashed, config, fault={"rank": 1, "batch": 2 + 28, "signal": "SIGKILL"})

    job = torchrun([str(WORKER), str(spec)], cwd=tmp_path)

    assert job.returncode != 0, job.output
    assert job.finished_at - _fault_time(crashed) < TIMEOUT_S + SLACK_S
    assert not (tmp_path / "output").exists()
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    assert checkpoint.name == str(20 * 32)

    resumed = tmp_path / "resumed"
    ranks = start_ranks(write_spec(resumed, {**config, "resume_from_checkpoint": str(checkpoint)}))
    errors = [rank.communicate(timeout=90)[1] for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], errors
    assert json.loads((resumed / "rank0.json").read_text())["n_tokens"] == 40 * 32

    reference = TrainingRunnerConfig.from_dict({**config, "output_path": str(tmp_path / "reference"),
                                                   "checkpoint_path": str(tmp_path / "reference_checkpoints")})
    TrainingRunner(reference).run()
    differences = max_weight_difference(tmp_path / "output", tmp_path / "reference")
    assert max(differences.values()) <= 1e-5, differences

    # With slice sharding every rank's state is the same, so one process can finish the job too.
    alone = TrainingRunnerConfig.from_dict({**config, "output_path": str(tmp_path / "alone"),
                                               "resume_from_checkpoint": str(checkpoint)})
    TrainingRunner(alone).run()
    differences = max_weight_difference(tmp_path / "alone", tmp_path / "reference")
    assert max(differences.values()) <= 1e-5, differences


def test_a_hung_rank_fails_its_peer_after_distributed_timeout_s(tmp_path: Path) -> None:
    config = synthetic_config(tmp_path, TOPK, distributed_timeout_s=TIMEOUT_S)
    spec = write_spec(tmp_path, config, fault={"rank": 1, "batch": 2 + 10, "signal": "SIGSTOP"})
    rank0, rank1 = start_ranks(spec)
    try:
        _, stderr = rank0.communicate(timeout=60)
        exited_at = time.time()
    finally:
        rank1.send_signal(signal.SIGKILL)
        rank1.communicate()

    assert rank0.returncode != 0
    waited = exited_at - _fault_time(tmp_path)
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + SLACK_S, stderr
    assert "rank 0 of 2 failed after step" in stderr
    assert "distributed_timeout_s=4" in stderr
