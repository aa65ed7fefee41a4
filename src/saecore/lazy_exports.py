"""Names a package's ``__init__`` exports but imports only on first access (PEP 562).

``saecore`` exports its trainer this way, so that ``import saecore`` does not load the
training loop, and plugin packages export their public classes this way, so that the
entry point (which imports the package) stays cheap. A type checker sees the names
through the package's ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, where ``exports`` maps each name to the module defining it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
