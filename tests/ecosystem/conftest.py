"""Fixtures for the ecosystem tests: a fresh registry per test, in-process plugins, an offline Hub cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.hub_cache import offline_hub_cache

from saecore.plugin_manager import ENV_BLOCK, ENV_ONLY, ENV_STRICT, ENV_TRACE
from saecore.registry import add_in_process_plugin, remove_in_process_plugin, reset_registry


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every installed plugin, rediscovered for each test, with no debugging switch set."""
    for variable in (ENV_ONLY, ENV_BLOCK, ENV_STRICT, ENV_TRACE):
        monkeypatch.delenv(variable, raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def add_plugin() -> Iterator[Callable[[Any, str], None]]:
    """``add_plugin(plugin, name)`` registers an in-process plugin until the test ends."""
    added: list[str] = []

    def add(plugin: Any, name: str) -> None:
        add_in_process_plugin(plugin, name)
        added.append(name)

    yield add
    for name in added:
        remove_in_process_plugin(name)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hub cache in offline mode."""
    return offline_hub_cache(tmp_path, monkeypatch)

