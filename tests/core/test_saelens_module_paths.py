"""SAELens's submodule paths under saecore: names a plugin provides, served from the core module users import.

``from sae_lens.evals import run_evals`` becomes ``from saecore.evals import run_evals``; the
core module finds the name among the plugins' exports. These tests run with the LLM
plugin absent (the core tests see only ``sae_standard``), plus in-process plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import saecore
import saecore.evals
import saecore.saes.standard_sae
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


@pytest.mark.parametrize(
    ("module", "name", "package"),
    [
        ("saecore.saes.topk_sae", "TopKTrainingSAE", "saecore-sae-topk"),
        ("saecore.saes.jumprelu_sae", "Step", "saecore-sae-jumprelu"),
        ("saecore.saes.matryoshka_batchtopk_sae", "MatryoshkaBatchTopKTrainingSAE", "saecore-sae-matryoshka-batchtopk"),
        ("saecore.cache_activations_runner", "CacheActivationsRunner", "saecore-source-llm"),
        ("saecore.pretokenize_runner", "PretokenizeRunner", "saecore-source-llm"),
        ("saecore.llm_sae_training_runner", "LanguageModelSAETrainingRunner", "saecore-source-llm"),
        ("saecore.multi_sae_training_runner", "MultiSAETrainingRunnerConfig", "saecore-source-llm"),
        ("saecore.analysis.sae_transformer_bridge", "SAETransformerBridge", "saecore-source-llm"),
        ("saecore.config", "LanguageModelSAERunnerConfig", "saecore-source-llm"),
        ("saecore.saes.transcoder", "JumpReLUSkipTranscoder", "saecore-transcoders"),
    ],
)
def test_mirrored_module_paths_name_the_missing_plugin(module: str, name: str, package: str) -> None:
    with pytest.raises(ImportError, match=f"cannot import name '{name}' from '{module}'.*pip install {package}"):
        exec(f"from {module} import {name}", {})


def test_an_installed_plugin_serves_its_module_path_and_the_core_contracts_import() -> None:
    from saecore.saes.sae import SAE, TrainingSAE
    from saecore.saes.standard_sae import StandardSAE, StandardTrainingSAEConfig

    assert issubclass(StandardSAE, SAE)
    assert StandardTrainingSAEConfig.architecture() == "standard"
    assert TrainingSAE is saecore.TrainingSAE
    assert "StandardSAE" in dir(saecore.saes.standard_sae)
