"""Without CUDA the GPU checks are collected and skipped, each with a reason that says CUDA is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cuda_runs import NO_CUDA

GPU_TESTS = Path(__file__).parent


class _Outcomes:
    """A pytest plugin that keeps each test's outcome and, for a skip, its reason."""

    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup" or report.outcome != "passed":
            reason = str(report.longrepr[-1]) if report.skipped and isinstance(report.longrepr, tuple) else ""
            self.outcomes.setdefault(report.nodeid, (report.outcome, reason))


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: the GPU checks run instead")
def test_every_gpu_check_is_skipped_for_want_of_cuda() -> None:
    outcomes = _Outcomes()
    paths = [str(path) for path in sorted(GPU_TESTS.glob("test_*.py")) if path.name != Path(__file__).name]
    exit_code = pytest.main([*paths, "-q", "-p", "no:cacheprovider"], plugins=[outcomes])
    assert exit_code == pytest.ExitCode.OK
    assert len(outcomes.outcomes) > 40  # every recipe, two precisions, plus the kernel checks
    for nodeid, (outcome, reason) in outcomes.outcomes.items():
        assert outcome == "skipped", nodeid
        assert "CUDA" in reason and reason.endswith(NO_CUDA), nodeid
