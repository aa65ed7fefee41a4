"""saecore's pytest plugin: fixtures for testing saecore plugins, ours or anyone's.

Installed with saecore (entry point group ``pytest11``), so pytest loads it in every
environment that has saecore; before that, or to be explicit, load it with
``pytest -p saecore.testing.pytest_plugin``. It adds no autouse fixture and changes
nothing unless a test asks for one of its fixtures or the option below is given.

Fixtures:

- ``saecore_registry``: the registry, freshly discovered for the test and forgotten after.
- ``saecore_register``: ``saecore_register(plugin, name)`` registers a plugin object from
  Python (a module or an object with ``@hookimpl`` methods) for the rest of the test.
- ``saecore_only_plugins``: ``saecore_only_plugins("sae_standard", "my_plugin")`` restricts
  discovery to these entry points (like ``SAECORE_PLUGINS``) for the rest of the test.

Option: ``--saecore-strict-plugins`` makes a plugin that fails to import or register raise
(``SAECORE_STRICT_PLUGINS=1``) instead of being reported and skipped, so a broken plugin
fails the run with its traceback.

The conformance suites are base classes, imported from :mod:`saecore.testing`:
``ArchitectureConformance`` and ``SourceConformance``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

STRICT_OPTION = "--saecore-strict-plugins"
_saved_strict: list[str | None] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("saecore", "saecore plugins")
    group.addoption(
        STRICT_OPTION,
        action="store_true",
        default=False,
        help="raise when a saecore plugin fails to import or register (SAECORE_STRICT_PLUGINS=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption(STRICT_OPTION):
        from saecore.plugin_manager import ENV_STRICT
        from saecore.registry import reset_registry

        _saved_strict.append(os.environ.get(ENV_STRICT))
        os.environ[ENV_STRICT] = "1"
        reset_registry()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _saved_strict:
        return
    from saecore.plugin_manager import ENV_STRICT
    from saecore.registry import reset_registry

    previous = _saved_strict.pop()
    if previous is None:
        os.environ.pop(ENV_STRICT, None)
    else:
        os.environ[ENV_STRICT] = previous
    reset_registry()


@pytest.fixture
def saecore_registry() -> Iterator[Any]:
    """The registry as discovery finds it now (entry points plus in-process plugins)."""
    from saecore.registry import get_registry, reset_registry

    reset_registry()
    yield get_registry()
    reset_registry()


@pytest.fixture
def saecore_register() -> Iterator[Callable[[Any, str], None]]:
    """``saecore_register(plugin, name)``: register a plugin object until the test ends."""
    from saecore.registry import add_in_process_plugin, remove_in_process_plugin

    added: list[str] = []

    def register(plugin: Any, name: str) -> None:
        add_in_process_plugin(plugin, name)
        added.append(name)

    yield register
    for name in reversed(added):
        remove_in_process_plugin(name)


@pytest.fixture
def saecore_only_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``saecore_only_plugins(*names)``: discover only these entry points until the test ends.

    The core's built-ins (the synthetic, cached and tensor sources, the converters) always load.
    """
    from saecore.plugin_manager import ENV_BLOCK, ENV_ONLY
    from saecore.registry import reset_registry

    def restrict(*names: str) -> None:
        monkeypatch.delenv(ENV_BLOCK, raising=False)
        monkeypatch.setenv(ENV_ONLY, ",".join(names))
        reset_registry()

    yield restrict
    reset_registry()
