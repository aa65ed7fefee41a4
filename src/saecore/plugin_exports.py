"""Names a plugin provides, served from a core module: ``saecore`` itself, or the module path SAELens users import from.

``from sae_lens.evals import run_evals`` becomes ``from saecore.evals import run_evals``
although ``run_evals`` lives in ``saecore-source-llm``: the core module looks the name
up among the plugins' registered exports when it is first asked for, and never imports
the plugin itself. Without the plugin, the ImportError names the package to install.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from typing import Any

from saecore.known_plugins import CLASS_PACKAGES, install_hint
from saecore.registry import get_registry


def plugin_export(module: str, name: str) -> Any:
    """The object a plugin exports as ``name``, asked for from ``module``."""
    exported = get_registry().exported_classes()
    if name in exported:
        return exported[name]
    if name in CLASS_PACKAGES:
        package = CLASS_PACKAGES[name]
        raise ImportError(
            f"cannot import name {name!r} from {module!r}: it is provided by the plugin package "
            f"{package}, which is not installed: {install_hint(package)}",
            name=name,
        )
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def plugin_exports(module: str, names: Collection[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``module``, serving the plugin exports ``names``."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return plugin_export(module, name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module]), *names})

    return __getattr__, __dir__
