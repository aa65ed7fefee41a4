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


def plugin_export(module: str, name: str, package: str | None = None) -> Any:
    """The object a plugin exports as ``name``, asked for from ``module``.

    ``package`` is the plugin package that provides it, for the error when none does
    (default: the package ``known_plugins.CLASS_PACKAGES`` names).
    """
    exported = get_registry().exported_classes()
    if name in exported:
        return exported[name]
    package = package or CLASS_PACKAGES.get(name)
    if package is not None:
        raise ImportError(
            f"cannot import name {name!r} from {module!r}: it is provided by the plugin package "
            f"{package}, which is not installed: {install_hint(package)}",
            name=name,
        )
    raise AttributeError(f"module {module!r} has no attribute {name!r}")


def plugin_exports(
    module: str, names: Collection[str], package: str
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``module``, serving the exports ``names`` of the plugin package ``package``."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return plugin_export(module, name, package)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module]), *names})

    return __getattr__, __dir__
