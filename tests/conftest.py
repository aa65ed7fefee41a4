"""Suite-wide pytest configuration: custom markers only; each test folder owns its fixtures."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow_install: builds a virtualenv and pip-installs fixture plugin packages "
        "(runs by default; deselect with -m 'not slow_install')",
    )


def pytest_sessionstart(session: pytest.Session) -> None:
    # Tiny test models run ~30x slower with torch's thread pool on a shared 2-core machine.
    import torch

    torch.set_num_threads(1)
