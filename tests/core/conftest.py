"""Fixtures for the core's tests: a registry that sees only the standard plugin plus in-process fakes.

Other plugin packages (gated, topk, ...) may or may not be installed next to the core;
restricting entry points to ``sae_standard`` keeps these tests' expectations the same
either way. Every test starts and ends with a freshly discovered registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from saecore.plugin_manager import ENV_BLOCK, ENV_ONLY, ENV_STRICT, ENV_TRACE
from saecore.registry import add_in_process_plugin, remove_in_process_plugin, reset_registry


@pytest.fixture(autouse=True)
def standard_plugin_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for variable in (ENV_ONLY, ENV_BLOCK, ENV_STRICT, ENV_TRACE):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv(ENV_ONLY, "sae_standard")
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

