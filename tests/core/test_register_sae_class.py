"""SAELens's registry functions (``register_sae_class`` and friends) on saecore's plugin registry."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fixtures.in_process import InProcessReluSAE, InProcessReluSAEConfig
from fixtures.signed_topk import SIGNED_TOPK, SignedTopKTrainingSAE, SignedTopKTrainingSAEConfig

from saecore import (
    SAE,
    DuplicateNameError,
    PluginLoadError,
    TrainingSAE,
    get_registry,
    get_sae_class,
    get_sae_training_class,
    register_sae_class,
    register_sae_training_class,
)
from saecore.cli import plugins_cmd
from saecore.registry import PYTHON_REGISTRATIONS_PLUGIN, remove_in_process_plugin, reset_registry

CFG = {"architecture": "inproc_relu", "d_in": 8, "d_sae": 16}


@pytest.fixture(autouse=True)
def forget_python_registrations() -> Iterator[None]:
    yield
    remove_in_process_plugin(PYTHON_REGISTRATIONS_PLUGIN)


def test_a_registered_class_builds_by_name_and_loads_from_disk(tmp_path: Path) -> None:
    register_sae_class("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)
    assert get_sae_class("inproc_relu") == (InProcessReluSAE, InProcessReluSAEConfig)
    built = SAE.from_dict(CFG)
    assert type(built) is InProcessReluSAE
    built.save_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    assert type(loaded) is InProcessReluSAE
    torch.testing.assert_close(loaded.W_enc, built.W_enc)


def test_a_registered_class_outlives_a_registry_reset() -> None:
    register_sae_class("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)
    reset_registry()
    assert get_registry().architecture("inproc_relu").provider.name == PYTHON_REGISTRATIONS_PLUGIN


def test_a_registered_training_class_builds_by_name() -> None:
    register_sae_training_class(SIGNED_TOPK, SignedTopKTrainingSAE, SignedTopKTrainingSAEConfig)
    assert get_sae_training_class(SIGNED_TOPK) == (SignedTopKTrainingSAE, SignedTopKTrainingSAEConfig)
    built = TrainingSAE.from_dict({"architecture": SIGNED_TOPK, "d_in": 8, "d_sae": 16, "k": 2})
    assert type(built) is SignedTopKTrainingSAE


def test_saecore_plugins_lists_the_registrations_as_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    register_sae_class("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)
    plugins_cmd.run(argparse.Namespace(json=False))
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(PYTHON_REGISTRATIONS_PLUGIN))
    assert row.split()[1] == "in-process"
    assert "architectures: inproc_relu" in row


def test_registering_a_name_twice_is_a_value_error_naming_the_first_provider() -> None:
    register_sae_class("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)
    with pytest.raises(ValueError, match="'inproc_relu' is already registered, by in-process plugin") as caught:
        register_sae_class("inproc_relu", InProcessReluSAE, InProcessReluSAEConfig)
    assert isinstance(caught.value, DuplicateNameError)
    with pytest.raises(ValueError, match=r"'standard' is already registered, by saecore-sae-standard"):
        register_sae_class("standard", InProcessReluSAE, InProcessReluSAEConfig)
    assert get_sae_class("inproc_relu") == (InProcessReluSAE, InProcessReluSAEConfig)


def test_a_config_class_declaring_another_architecture_is_refused_and_nothing_is_kept() -> None:
    with pytest.raises(PluginLoadError, match=r"InProcessReluSAEConfig\.ARCHITECTURE is 'inproc_relu'"):
        register_sae_class("other_name", InProcessReluSAE, InProcessReluSAEConfig)
    with pytest.raises(KeyError):
        get_sae_class("other_name")


def test_unknown_names_are_key_errors_that_list_the_installed_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown architecture 'nope' \(installed: standard\)"):
        get_sae_class("nope")
    with pytest.raises(KeyError, match="unknown training recipe 'nope'"):
        get_sae_training_class("nope")
