"""A light ``import saecore``, lazy names that resolve, and plugin packages that export their classes.

The layer contracts are checked by ``lint-imports`` (``[tool.importlinter]`` in
pyproject.toml) and the absence of import cycles by ``tests/lint``, both in ``nox -s lint``.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from fixtures.in_process import ArchitecturePlugin, InProcessReluSAE, InProcessReluSAEConfig

import saecore
from saecore import registry
from saecore.config.sae_config import SAEConfig, TrainingSAEConfig
from saecore.io.converters import SAEConverter
from saecore.known_plugins import CLASS_PACKAGES
from saecore.sae import SAE
from saecore.sources.base import ActivationSource, SourceConfig
from saecore.training_sae import TrainingSAE

TRAINING_NAMES = ("LoggingConfig", "SAESweepConfig", "SAESweepRunner", "SAETrainer", "SweepMember", "TrainerConfig",
                  "TrainingRunnerConfig")
TORCH_BACKED_NAMES = ("SAE", "SAEConfig", "TrainingSAEConfig", "TrainingPresets", "SAEMetadata", "HookPoint",
                      "ActivationSource", "SourceConfig", "TrainCoefficientConfig", "TrainingSAE", "TrainStepInput",
                      "TrainStepOutput", "PretrainedSaeDiskLoader", "PretrainedSaeHuggingfaceLoader",
                      "upload_saes_to_huggingface")
DIRECTORY_NAMES = ("PretrainedSAELookup", "get_config_overrides", "get_norm_scaling_factor",
                   "get_pretrained_saes_directory", "get_releases_for_repo_id", "get_repo_id_and_folder_name")
HEAVY_PACKAGES = ("saecore.training", "saecore.distributed", "saecore.cli")


def test_import_saecore_loads_no_trainer_distributed_or_cli() -> None:
    code = "import sys, saecore; print('\\n'.join(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    heavy = [name for name in loaded if any(name == p or name.startswith(p + ".") for p in HEAVY_PACKAGES)]
    assert heavy == []


@pytest.mark.parametrize("name", TRAINING_NAMES)
def test_trainer_names_import_from_the_top_level(name: str) -> None:
    assert getattr(saecore, name) is getattr(import_module("saecore.training"), name)


def test_dir_lists_the_lazy_trainer_names_and_installed_plugin_classes() -> None:
    names = dir(saecore)
    assert set(TRAINING_NAMES) <= set(names)
    assert {"StandardSAE", "StandardTrainingSAEConfig", "SAE", "get_registry"} <= set(names)
    assert names == sorted(names)


def test_dir_lists_a_plugin_class_registered_in_process(add_plugin: Callable[[Any, str], None]) -> None:
    assert "InProcessReluSAE" not in dir(saecore)
    add_plugin(ArchitecturePlugin(("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)), "mine")
    assert {"InProcessReluSAE", "InProcessReluSAEConfig"} <= set(dir(saecore))


def test_type_checking_imports_cover_every_lazy_name() -> None:
    tree = ast.parse(Path(saecore.__file__).read_text())
    [block] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    declared = {alias.asname for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert declared == set(TRAINING_NAMES) | set(TORCH_BACKED_NAMES) | set(DIRECTORY_NAMES) | set(CLASS_PACKAGES)


def test_registry_names_the_contract_classes_it_checks() -> None:
    contracts = {
        registry.SAE_CONTRACT: SAE,
        registry.TRAINING_SAE_CONTRACT: TrainingSAE,
        registry.SAE_CONFIG_CONTRACT: SAEConfig,
        registry.TRAINING_SAE_CONFIG_CONTRACT: TrainingSAEConfig,
        registry.ACTIVATION_SOURCE_CONTRACT: ActivationSource,
        registry.SOURCE_CONFIG_CONTRACT: SourceConfig,
        registry.SAE_CONVERTER_CONTRACT: SAEConverter,
    }
    for qualified_name, cls in contracts.items():
        assert qualified_name == f"{cls.__module__}.{cls.__qualname__}"
        assert registry.is_subclass_of(cls, qualified_name)
    assert not registry.is_subclass_of(object, registry.SAE_CONTRACT)


def _installed_plugin_packages() -> list[str]:
    modules = {package.removeprefix("saecore-").replace("-", "_") for package in CLASS_PACKAGES.values()}
    return sorted(f"saecore_{m}" for m in modules if importlib.util.find_spec(f"saecore_{m}") is not None)


@pytest.mark.parametrize("module_name", _installed_plugin_packages())
def test_plugin_packages_export_their_public_classes(module_name: str) -> None:
    package = import_module(module_name)
    distribution = "saecore-" + module_name.removeprefix("saecore_").replace("_", "-")
    expected = sorted(name for name, owner in CLASS_PACKAGES.items() if owner == distribution)
    assert package.__all__ == expected
    assert set(expected) <= set(dir(package))
    for name in expected:
        try:
            cls = getattr(package, name)
        except ImportError as error:
            # HookedSAETransformer is built on TransformerLens 3; with 4.x installed its import says what to install.
            assert name == "HookedSAETransformer" and "transformer-lens<4" in str(error)
            continue
        assert cls.__name__ == name and cls.__module__.startswith(module_name + ".")
