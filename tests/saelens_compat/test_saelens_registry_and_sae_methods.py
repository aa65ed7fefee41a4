"""SAELens's registry functions and SAE methods against saecore's, side by side in one process."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import pytest
import torch

sae_lens = pytest.importorskip("sae_lens")
saecore = pytest.importorskip("saecore")

from saecore.registry import PYTHON_REGISTRATIONS_PLUGIN, remove_in_process_plugin  # noqa: E402

REGISTRY_FUNCTIONS = ("register_sae_class", "register_sae_training_class", "get_sae_class", "get_sae_training_class")
HOOK_Z = {"model_name": "gpt2", "hook_name": "blocks.1.attn.hook_z"}
D_IN, D_SAE = 8, 16


@pytest.fixture(autouse=True)
def forget_python_registrations() -> Iterator[None]:
    yield
    remove_in_process_plugin(PYTHON_REGISTRATIONS_PLUGIN)


def parameter_names(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.mark.parametrize("name", REGISTRY_FUNCTIONS)
def test_registry_functions_take_saelens_parameters(name: str) -> None:
    import sae_lens.registry

    assert parameter_names(getattr(saecore, name)) == parameter_names(getattr(sae_lens.registry, name))
    assert getattr(saecore.registry, name) is getattr(saecore, name)


def test_both_refuse_a_duplicate_with_a_value_error() -> None:
    for library in (sae_lens, saecore):
        sae_class, config_class = library.registry.get_sae_class("standard")
        with pytest.raises(ValueError, match="already registered"):
            library.register_sae_class("standard", sae_class, config_class)
        training_class, training_config_class = library.registry.get_sae_training_class("standard")
        with pytest.raises(ValueError, match="already registered"):
            library.register_sae_training_class("standard", training_class, training_config_class)


def test_both_raise_key_error_for_unknown_names() -> None:
    for library in (sae_lens, saecore):
        with pytest.raises(KeyError):
            library.registry.get_sae_class("no_such_architecture")
        with pytest.raises(KeyError):
            library.registry.get_sae_training_class("no_such_architecture")


@pytest.mark.parametrize("architecture", ["standard", "gated", "jumprelu", "topk"])
def test_lookups_return_the_same_named_classes(architecture: str) -> None:
    import sae_lens.registry

    for getter in ("get_sae_class", "get_sae_training_class"):
        expected = [cls.__name__ for cls in getattr(sae_lens.registry, getter)(architecture)]
        assert [cls.__name__ for cls in getattr(saecore, getter)(architecture)] == expected


def test_a_user_class_registered_like_in_saelens_loads_by_name(tmp_path: Any) -> None:
    class MyConfig(saecore.StandardSAEConfig):
        @classmethod
        def architecture(cls) -> str:
            return "my_standard"

    class MySAE(saecore.StandardSAE):
        pass

    saecore.register_sae_class("my_standard", MySAE, MyConfig)
    sae = saecore.SAE.from_dict({"architecture": "my_standard", "d_in": D_IN, "d_sae": D_SAE})
    sae.save_model(tmp_path)
    assert type(saecore.SAE.load_from_disk(tmp_path)) is MySAE


def twin_saes(metadata: dict[str, Any]) -> tuple[Any, Any]:
    """A SAELens standard SAE and the saecore SAE with the same config and weights."""
    cfg = {"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE, "metadata": metadata}
    theirs = sae_lens.SAE.from_dict(cfg)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    ours = saecore.SAE.from_dict(cfg)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def test_get_name_matches() -> None:
    theirs, ours = twin_saes(HOOK_Z)
    assert ours.get_name() == theirs.get_name()


def test_hook_z_switches_match() -> None:
    theirs, ours = twin_saes(HOOK_Z)
    heads = torch.randn(3, 2, D_IN // 2, generator=torch.Generator().manual_seed(1))
    for sae in (theirs, ours):
        sae.turn_on_forward_pass_hook_z_reshaping()
    torch.testing.assert_close(ours(heads), theirs(heads))
    assert ours.hook_z_reshaping_mode == theirs.hook_z_reshaping_mode is True
    for sae in (theirs, ours):
        sae.turn_off_forward_pass_hook_z_reshaping()
    flat = heads.flatten(-2)
    torch.testing.assert_close(ours(flat), theirs(flat))
    assert ours.hook_z_reshaping_mode == theirs.hook_z_reshaping_mode is False


def test_both_refuse_hook_z_reshaping_for_another_hook() -> None:
    for sae in twin_saes({"hook_name": "blocks.1.hook_resid_post"}):
        with pytest.raises(ValueError):
            sae.turn_on_forward_pass_hook_z_reshaping()


@pytest.mark.parametrize("architecture", ["standard", "gated", "jumprelu", "topk"])
def test_log_histograms_match(architecture: str) -> None:
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "k": 4}
    theirs = sae_lens.TrainingSAE.from_dict(cfg)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    ours = saecore.TrainingSAE.from_dict(cfg)
    ours.load_state_dict(theirs.state_dict())
    expected = theirs.log_histograms()
    histograms = ours.log_histograms()
    assert sorted(histograms) == sorted(expected)
    for name, values in expected.items():
        torch.testing.assert_close(torch.from_numpy(histograms[name]), torch.from_numpy(values))


def test_metadata_from_dict_matches() -> None:
    values = {"model_name": "gpt2", "context_size": 64, "note": {"a": 1}}
    theirs = sae_lens.saes.sae.SAEMetadata.from_dict(values)
    ours = saecore.SAEMetadata.from_dict(values)
    # Both stamp the version fields first (SAELens its own version, saecore the one it follows).
    versions = ("sae_lens_version", "sae_lens_training_version")
    assert list(ours.to_dict()) == list(theirs.to_dict()) and list(ours.to_dict())[:2] == list(versions)
    assert {key: value for key, value in ours.to_dict().items() if key not in versions} == {
        key: value for key, value in theirs.to_dict().items() if key not in versions}
    assert [value for key, value in ours.items() if key not in versions] == [
        value for key, value in theirs.items() if key not in versions]


@pytest.mark.parametrize("architecture", ["standard", "gated", "jumprelu", "topk"])
def test_training_config_methods_match(architecture: str) -> None:
    cfg = {"architecture": architecture, "d_in": D_IN, "d_sae": D_SAE, "k": 4}
    theirs = sae_lens.TrainingSAE.from_dict(cfg).cfg
    ours = saecore.TrainingSAE.from_dict(cfg).cfg
    assert ours.get_inference_config_class().__name__ == theirs.get_inference_config_class().__name__
    their_details = theirs.get_training_architecture_details()
    our_details = ours.get_training_architecture_details()
    assert {key: our_details[key] for key in their_details} == their_details
    their_dict, our_dict = theirs.get_inference_sae_cfg_dict(), ours.get_inference_sae_cfg_dict()
    shared = set(their_dict) - {"metadata"}
    assert {key: our_dict[key] for key in shared} == {key: their_dict[key] for key in shared}
    ours.add_training_info_to_metadata()
    assert ours.metadata.training_architecture == theirs.metadata.training_architecture
