"""SAELens's submodule paths under saecore: names a plugin provides, served from the core module users import.

``from sae_lens.evals import run_evals`` becomes ``from saecore.evals import run_evals``; the
core module finds the name among the plugins' exports. These tests run with the LLM
plugin absent (the core tests see only ``sae_standard``), plus in-process plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import saecore.evals
import saecore.training.activations_store
from saecore import hookimpl
from saecore.hookspecs import RegisterExport


def run_evals() -> str:
    return "evaluated"


class ActivationsStore:
    pass


class ExportingPlugin:
    @hookimpl
    def saecore_register_exports(self, register: RegisterExport) -> None:
        register(run_evals)
        register(ActivationsStore)


@pytest.mark.parametrize(("module", "name"), [("saecore.evals", "run_evals"), ("saecore.evals", "EvalConfig"),
                                              ("saecore.evals", "get_recons_loss"),
                                              ("saecore.training.activations_store", "ActivationsStore")])
def test_without_the_llm_plugin_the_import_names_the_package(module: str, name: str) -> None:
    expected = f"cannot import name '{name}' from '{module}'.*pip install saecore-source-llm"
    with pytest.raises(ImportError, match=expected):
        exec(f"from {module} import {name}", {})


def test_the_names_resolve_to_what_a_plugin_exports(add_plugin: Callable[[Any, str], None]) -> None:
    add_plugin(ExportingPlugin(), "exporter")
    from saecore.evals import run_evals as resolved
    from saecore.training.activations_store import ActivationsStore as store_class

    assert resolved() == "evaluated"
    assert store_class is ActivationsStore
    assert {"run_evals", "EvalConfig", "reconstruction"} <= set(dir(saecore.evals))
    assert "ActivationsStore" in dir(saecore.training.activations_store)


def test_other_names_stay_plain_attribute_errors_and_submodules_still_import() -> None:
    with pytest.raises(ImportError, match="cannot import name 'no_such_metric'") as caught:
        exec("from saecore.evals import no_such_metric", {})
    assert "pip install" not in str(caught.value)
    from saecore.evals.reconstruction import evaluate_reconstruction

    assert callable(evaluate_reconstruction)
