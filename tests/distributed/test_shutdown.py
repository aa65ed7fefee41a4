"""Leaving the process group really frees it: no gloo thread outlives ``shutdown``.

A gloo thread still running when the interpreter shuts down aborts the process if it
drops a tensor then (it must take the GIL, and Python ends the thread mid-C++). The group
outlived ``destroy_process_group`` whenever a torch module that binds ``group.WORLD`` as
a default argument was first imported after the group was joined, which building
``torch.optim.Adam`` does (through torch._dynamo). The job's ranks import nothing but
saecore and torch before joining, as ``saecore train`` does, so that import comes late.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from distributed_helpers import torchrun

RANK_SCRIPT = """
import os
import torch
from saecore.distributed.context import init_from_env, shutdown

context, owned = init_from_env("cpu", 30.0)
torch.optim.Adam([torch.nn.Parameter(torch.zeros(3))])  # imports torch._dynamo, as the trainer's optimizer does
context.sum_(torch.ones(2))
shutdown(owned, together=True)
threads = sorted(open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task"))
with open(f"rank{context.rank}.txt", "w") as report:  # a file each: the ranks' stdout lines interleave
    report.write(f"rank {context.rank} threads after shutdown: {threads}")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread names from /proc")
def test_no_gloo_thread_outlives_shutdown(tmp_path: Path) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    job = torchrun([str(script)], cwd=tmp_path)
    assert job.returncode == 0, job.output
    reports = [path.read_text() for path in sorted(tmp_path.glob("rank*.txt"))]
    assert len(reports) == 2, job.output
    assert not any("gloo" in report for report in reports), reports
