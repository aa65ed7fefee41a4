"""The registry seen through plugins registered from Python: lookups, lazy imports, validation."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
import torch
from fixtures.in_process import ArchitecturePlugin, InProcessReluSAE, InProcessReluSAEConfig, MisspelledHookPlugin

from saecore import SAE, DuplicateNameError, PluginLoadError, UnknownNameError, get_registry, hookimpl
from saecore.plugin_manager import ENV_STRICT, ENV_TRACE
from saecore.registry import remove_in_process_plugin, reset_registry

AddPlugin = Callable[[Any, str], None]
RELU = ("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)


def test_in_process_architecture_is_registered_under_its_provider(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(RELU), "mine")
    entry = get_registry().architecture("inproc_relu")
    assert (entry.sae_class, entry.config_class) == (InProcessReluSAE, InProcessReluSAEConfig)
    assert entry.provider.describe() == "in-process plugin 'mine'"
    assert get_registry().registrations_of("mine")["architectures"] == ["inproc_relu"]


def test_removing_an_in_process_plugin_forgets_its_names(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(RELU), "mine")
    assert "inproc_relu" in get_registry().architectures
    remove_in_process_plugin("mine")
    assert "inproc_relu" not in get_registry().architectures


def test_unknown_architecture_error_lists_installed_names(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(RELU), "mine")
    with pytest.raises(UnknownNameError) as caught:
        get_registry().architecture("no_such_architecture")
    message = str(caught.value)
    assert message == "unknown architecture 'no_such_architecture' (installed: inproc_relu, standard)"


def test_unknown_architecture_error_suggests_a_close_name(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(RELU), "mine")
    with pytest.raises(UnknownNameError, match=r"did you mean 'inproc_relu'\?"):
        SAE.from_dict({"architecture": "inproc_rleu", "d_in": 8, "d_sae": 16})


def test_known_but_uninstalled_architecture_names_the_package_to_install() -> None:
    with pytest.raises(UnknownNameError) as caught:
        SAE.from_dict({"architecture": "topk", "d_in": 8, "d_sae": 16, "k": 4})
    assert str(caught.value).startswith("architecture 'topk' is not installed: pip install saecore-sae-topk")
    assert "(installed: standard)" in str(caught.value)


def test_known_but_uninstalled_recipe_and_source_name_their_packages() -> None:
    registry = get_registry()
    recipe = "training recipe 'jumprelu' is not installed: pip install saecore-sae-jumprelu"
    with pytest.raises(UnknownNameError, match=recipe):
        registry.training_recipe("jumprelu")
    source = "activation source 'llm' is not installed: pip install saecore-source-llm"
    with pytest.raises(UnknownNameError, match=source):
        registry.source("llm")


def test_lazy_import_resolves_classes_of_registered_plugins(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(RELU), "mine")
    from saecore import InProcessReluSAE as resolved
    from saecore import StandardSAE

    assert resolved is InProcessReluSAE
    assert StandardSAE is get_registry().architecture("standard").sae_class


@pytest.mark.parametrize(
    ("name", "package"),
    [("TopKSAE", "saecore-sae-topk"), ("GatedTrainingSAEConfig", "saecore-sae-gated"),
     ("LanguageModelSAERunnerConfig", "saecore-source-llm")],
)
def test_lazy_import_of_a_known_missing_class_names_the_package(name: str, package: str) -> None:
    with pytest.raises(ImportError, match=f"pip install {package}") as caught:
        exec(f"from saecore import {name}", {})
    assert caught.value.name == name


def test_lazy_import_of_an_unknown_name_is_a_plain_import_error() -> None:
    with pytest.raises(ImportError, match="cannot import name 'NoSuchClass'"):
        exec("from saecore import NoSuchClass", {})


def test_sae_class_of_the_wrong_base_class_is_rejected(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(("inproc_linear", torch.nn.Linear, InProcessReluSAEConfig)), "wrong_base")
    registry = get_registry()
    assert "inproc_linear" not in registry.architectures
    assert "wrong_base" not in registry.plugins
    [failure] = registry.failures
    assert failure.plugin.name == "wrong_base"
    assert "architecture 'inproc_linear': sae_class must be a subclass of SAE" in failure.error
    assert "torch.nn.modules.linear.Linear" in failure.error


def test_config_class_of_the_wrong_base_class_is_rejected(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(("inproc_relu", InProcessReluSAE, dict)), "wrong_config")
    [failure] = get_registry().failures
    expected = "architecture 'inproc_relu': config_class must be a subclass of SAEConfig, got <class 'dict'>"
    assert expected in failure.error


def test_architecture_name_must_match_the_config_class(add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(("renamed", InProcessReluSAE, InProcessReluSAEConfig)), "mismatch")
    [failure] = get_registry().failures
    assert "InProcessReluSAEConfig.ARCHITECTURE is 'inproc_relu' but it is registered as 'renamed'" in failure.error


def test_a_plugin_that_fails_midway_registers_nothing(add_plugin: AddPlugin) -> None:
    bad = ("renamed", InProcessReluSAE, InProcessReluSAEConfig)
    add_plugin(ArchitecturePlugin(RELU, bad), "half_valid")
    registry = get_registry()
    assert sorted(registry.architectures) == ["standard"]
    assert [f.plugin.name for f in registry.failures] == ["half_valid"]


def test_invalid_registration_raises_in_strict_mode(add_plugin: AddPlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_STRICT, "1")
    add_plugin(ArchitecturePlugin(("renamed", InProcessReluSAE, InProcessReluSAEConfig)), "mismatch")
    with pytest.raises(PluginLoadError, match="in-process plugin 'mismatch' failed to register"):
        get_registry()


def test_duplicate_in_process_architecture_names_both_providers(add_plugin: AddPlugin) -> None:
    standard = get_registry().architecture("standard")
    add_plugin(ArchitecturePlugin(("standard", standard.sae_class, standard.config_class)), "again")
    with pytest.raises(DuplicateNameError) as caught:
        get_registry()
    message = str(caught.value)
    assert f"saecore-sae-standard {version('saecore-sae-standard')} (entry point 'sae_standard')" in message
    assert "in-process plugin 'again'" in message


def test_misspelled_in_process_hook_is_rejected_with_did_you_mean(add_plugin: AddPlugin) -> None:
    add_plugin(MisspelledHookPlugin(), "typo")
    expected = r"'saecore_register_source' \(did you mean 'saecore_register_sources'\?\)"
    with pytest.raises(PluginLoadError, match=expected):
        get_registry()


def test_trace_switch_writes_hook_calls_to_stderr(
    add_plugin: AddPlugin, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_plugin(ArchitecturePlugin(RELU), "mine")
    get_registry()
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(ENV_TRACE, "1")
    reset_registry()
    get_registry()
    err = capsys.readouterr().err
    for hook in ("saecore_register_architectures", "saecore_register_training_recipes",
                 "saecore_register_sources", "saecore_register_releases"):
        assert f"  {hook} [hook]" in err
        assert f"  finish {hook} -->" in err


class ImportPathExportPlugin:
    def __init__(self, *paths: str) -> None:
        self.paths = paths

    @hookimpl
    def saecore_register_exports(self, register: Any) -> None:
        for path in self.paths:
            register(path)


def test_an_export_given_as_an_import_path_is_imported_only_when_asked_for(add_plugin: AddPlugin) -> None:
    module = "fixtures.lazily_exported"
    sys.modules.pop(module, None)
    add_plugin(ImportPathExportPlugin(f"{module}:LazilyExported"), "import_path")
    exported = get_registry().exported_classes()
    assert "LazilyExported" in exported and "LazilyExported" in list(exported)
    assert module not in sys.modules
    from saecore import LazilyExported  # type: ignore[attr-defined]

    assert LazilyExported.__module__ == module


def test_an_import_path_without_an_attribute_is_rejected(add_plugin: AddPlugin) -> None:
    add_plugin(ImportPathExportPlugin("fixtures.lazily_exported"), "bad_path")
    [failure] = get_registry().failures
    assert "export 'fixtures.lazily_exported' must be an object or a 'module:attribute' import path" in failure.error
