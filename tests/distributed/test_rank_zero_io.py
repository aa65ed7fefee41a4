"""Only rank 0 writes the output and checkpoints, prints progress and logs to wandb.

Each rank is given its own output and checkpoint paths (``per_rank_paths``), so whatever
rank 1 wrote would be found under its own name. Periodic evaluations run (rank 0 has a
wandb run), so every rank must draw the evaluation batches in step with the others;
all ranks end with the same summary.
"""

from __future__ import annotations

import json
from pathlib import Path

from distributed_helpers import start_ranks, synthetic_config, write_spec


def test_only_rank_zero_saves_checkpoints_and_prints(tmp_path: Path) -> None:
    config = synthetic_config(
        tmp_path, {"architecture": "standard", "l1_coefficient": 0.3},
        n_checkpoints=2, save_final_checkpoint=True, verbose=True,
        logger={"log_to_wandb": True, "wandb_log_frequency": 10, "eval_every_n_wandb_logs": 2},
    )
    spec = write_spec(tmp_path, config, per_rank_paths=True)
    processes = start_ranks(spec, WANDB_DIR=str(tmp_path), WANDB_SILENT="true")
    stderr = [process.communicate(timeout=90)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], stderr

    assert (tmp_path / "output_rank0" / "sae_weights.safetensors").is_file()
    checkpoints = sorted(child.name for child in (tmp_path / "checkpoints_rank0").iterdir())
    assert checkpoints == sorted([str(14 * 32), str(27 * 32), f"final_{40 * 32}"])
    assert not (tmp_path / "output_rank1").exists()
    assert not (tmp_path / "checkpoints_rank1").exists()

    assert f"step 40/40 | {40 * 32:,}/{40 * 32:,} tokens" in stderr[0]
    assert "checkpoint written" in stderr[0]
    assert stderr[1] == ""
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1
    summaries = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert summaries[0] == {**summaries[1], "finished_at": summaries[0]["finished_at"]}
