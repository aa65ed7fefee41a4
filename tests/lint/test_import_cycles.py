"""No import cycle among saecore's modules, counting imports inside functions.

Reads the source with grimp (import-linter's graph builder) and never imports saecore,
so ``nox -s lint`` runs it without torch. ``if TYPE_CHECKING:`` imports are left out:
they never run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")


def test_no_import_cycle_counting_imports_inside_functions() -> None:
    graph = grimp.build_graph("saecore", exclude_type_checking_imports=True)
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                cycles.append(" -> ".join((importer, *back)))
    assert cycles == []


def test_the_graph_counts_imports_inside_functions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "cycle_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def build():\n    from cycle_probe import high\n    return high\n")
    (package / "high.py").write_text("from cycle_probe import low\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    graph = grimp.build_graph("cycle_probe", exclude_type_checking_imports=True, cache_dir=None)
    assert graph.find_shortest_chain(importer="cycle_probe.low", imported="cycle_probe.high") is not None
