"""One rank of a test job: ``python rank_worker.py SPEC.json`` (under torchrun, or with RANK etc. set).

The spec holds a runner config (``TrainingRunnerConfig.to_dict()`` form, synthetic
source) and what this test needs on top:

* ``fault``: ``{"rank": r, "batch": n, "signal": "SIGKILL" | "SIGSTOP" | "SIGTERM"}``:
  rank r sends itself the signal when its source serves batch n (a crash, a hang, a
  polite stop), after writing the time to ``{result_dir}/fault_time``;
* ``shardable``: the source offers ``shard_for_rank`` (its own stream per rank);
* ``per_rank_paths``: output and checkpoint paths get a ``_rank{r}`` suffix, so a test
  can see which ranks wrote anything;
* ``sweep``: the config is a sweep file's mapping (``SAESweepConfig.from_dict``), run by
  ``SAESweepRunner``; the result then lists the SAEs this rank trained and the summaries
  it holds.

Each rank that finishes writes ``{result_dir}/rank{r}.json`` with its summary.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from saecore.sources.cached import derive_seed
from saecore.sources.synthetic import SyntheticSource, SyntheticSourceConfig
from saecore.training import (
    SAESweepConfig,
    SAESweepRunner,
    TrainingInterruptedError,
    TrainingRunner,
    TrainingRunnerConfig,
)

INTERRUPTED_EXIT_CODE = 130


class ScriptedSource(SyntheticSource):
    """The synthetic source, with an optional fault and optional self-sharding."""

    def __init__(
        self,
        cfg: SyntheticSourceConfig,
        *,
        seed: int,
        fault: dict[str, Any] | None = None,
        shardable: bool = False,
        fault_time_file: Path | None = None,
    ) -> None:
        super().__init__(cfg, seed=seed)
        self.fault = fault
        self.shardable = shardable
        self.fault_time_file = fault_time_file

    def shard_for_rank(self, rank: int, world_size: int) -> bool:
        """Each rank gets its own stream: the generator reseeded from (seed, rank)."""
        if not self.shardable:
            return False
        self._generator.manual_seed(shard_seed(self.seed, rank))
        return True

    def next_batch(self, batch_size: int) -> torch.Tensor:
        batch = super().next_batch(batch_size)
        if self.fault is not None and self._batches_served == self.fault["batch"]:
            if self.fault_time_file is not None:
                self.fault_time_file.write_text(repr(time.time()))
            os.kill(os.getpid(), getattr(signal, self.fault["signal"]))
        return batch


def shard_seed(seed: int, rank: int) -> int:
    return derive_seed(seed, "rank", rank)


def main(spec_path: str) -> int:
    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ["RANK"])
    result_dir = Path(spec["result_dir"])
    if spec.get("sweep"):
        return run_sweep(spec, rank, result_dir)
    cfg = TrainingRunnerConfig.from_dict(spec["config"])
    if spec.get("per_rank_paths"):
        cfg = cfg.model_copy(update={
            "output_path": f"{cfg.output_path}_rank{rank}", "checkpoint_path": f"{cfg.checkpoint_path}_rank{rank}",
        })
    fault = spec.get("fault")
    assert isinstance(cfg.source, SyntheticSourceConfig)
    source = ScriptedSource(
        cfg.source, seed=cfg.seed, fault=fault if fault is not None and fault["rank"] == rank else None,
        shardable=bool(spec.get("shardable")), fault_time_file=result_dir / "fault_time",
    )
    runner = TrainingRunner(cfg, source=source)
    try:
        runner.run()
    except TrainingInterruptedError as error:
        print(f"rank {rank}: {error}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    assert runner.summary is not None
    result = {"explained_variance": runner.summary.explained_variance, "n_tokens": runner.summary.n_tokens,
              "dead_features": runner.summary.dead_features, "finished_at": time.time()}
    (result_dir / f"rank{rank}.json").write_text(json.dumps(result))
    return 0


def run_sweep(spec: dict[str, Any], rank: int, result_dir: Path) -> int:
    """This rank's part of a sweep on the scripted source; the result names what it trained."""
    cfg = SAESweepConfig.from_dict(spec["config"])
    fault = spec.get("fault")
    assert isinstance(cfg.first.source, SyntheticSourceConfig)
    source = ScriptedSource(
        cfg.first.source, seed=cfg.first.seed, fault=fault if fault is not None and fault["rank"] == rank else None,
        shardable=bool(spec.get("shardable")), fault_time_file=result_dir / "fault_time",
    )
    runner = SAESweepRunner(cfg, source=source)
    try:
        trained = runner.run()
    except TrainingInterruptedError as error:
        print(f"rank {rank}: {error}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    result = {"trained": list(trained), "summaries": list(runner.summaries)}
    (result_dir / f"rank{rank}.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
