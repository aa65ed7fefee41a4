"""Behaviour every SAE inherits from the base class, exercised through the standard plugin."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch
from fixtures.saes import randomized_sae, relu_sae_reference

from saecore import SAE, HookPoint, SAEConfig, SAEMetadata
from saecore.config.metadata import VERSION_KEYS
from saecore.version import SAELENS_VERSION

D_IN, D_SAE, BATCH = 8, 16, 5
HOOK_NAMES = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post",
              "hook_sae_recons", "hook_sae_error", "hook_sae_output")


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def zero(tensor: torch.Tensor, hook: HookPoint) -> torch.Tensor:
    return torch.zeros_like(tensor)


def test_run_with_cache_returns_every_hook_point_activation(x: torch.Tensor) -> None:
    sae = randomized_sae()
    sae.use_error_term = True
    out, cache = sae.run_with_cache(x)
    assert sorted(cache) == sorted(HOOK_NAMES)
    w_enc, w_dec, b_enc, b_dec = (t.detach() for t in (sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec))
    pre = (x - b_dec) @ w_enc + b_enc
    recons = torch.relu(pre) @ w_dec + b_dec
    expected = {
        "hook_sae_input": x,
        "hook_sae_acts_pre": pre,
        "hook_sae_acts_post": torch.relu(pre),
        "hook_sae_recons": recons,
        "hook_sae_error": x - recons,
        "hook_sae_output": recons + (x - recons),
    }
    for name, value in expected.items():
        assert cache[name].shape == value.shape, name
        torch.testing.assert_close(cache[name], value, rtol=0, atol=1e-12, msg=name)
    assert torch.equal(out, cache["hook_sae_output"])


def test_error_hook_runs_only_with_the_error_term(x: torch.Tensor) -> None:
    _, cache = randomized_sae().run_with_cache(x)
    assert sorted(cache) == sorted(set(HOOK_NAMES) - {"hook_sae_error"})


def test_run_with_cache_names_filter(x: torch.Tensor) -> None:
    _, cache = randomized_sae().run_with_cache(x, names_filter=["hook_sae_acts_post"])
    assert list(cache) == ["hook_sae_acts_post"]
    assert cache["hook_sae_acts_post"].shape == (BATCH, D_SAE)


def test_zeroing_feature_activations_leaves_only_b_dec(x: torch.Tensor) -> None:
    sae = randomized_sae()
    out = sae.run_with_hooks(x, fwd_hooks=[("hook_sae_acts_post", zero)])
    assert torch.equal(out, sae.b_dec.detach().expand(BATCH, D_IN))
    torch.testing.assert_close(sae(x), relu_sae_reference(sae, x), rtol=0, atol=1e-12)


def test_hook_on_unknown_name_lists_the_hook_points(x: torch.Tensor) -> None:
    with pytest.raises(KeyError, match="no hook point named 'hook_sae_acts'; available: hook_sae_input"):
        randomized_sae().run_with_hooks(x, fwd_hooks=[("hook_sae_acts", zero)])


def test_error_term_reproduces_the_input(x: torch.Tensor) -> None:
    sae = randomized_sae()
    sae.use_error_term = True
    torch.testing.assert_close(sae(x), x, rtol=0, atol=1e-12)


def test_error_term_is_computed_without_hooks(x: torch.Tensor) -> None:
    """A hook changes the reconstruction; the error term still comes from the clean pass."""
    sae = randomized_sae()
    sae.use_error_term = True
    out = sae.run_with_hooks(x, fwd_hooks=[("hook_sae_acts_post", zero)])
    expected = sae.b_dec.detach() + (x - relu_sae_reference(sae, x))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert all(isinstance(sae.hook_dict[name], HookPoint) for name in HOOK_NAMES)
    torch.testing.assert_close(sae(x), x, rtol=0, atol=1e-12)


def test_hook_on_the_input_changes_the_reconstruction_but_not_the_error_term(x: torch.Tensor) -> None:
    sae = randomized_sae()
    sae.use_error_term = True
    out = sae.run_with_hooks(x, fwd_hooks=[("hook_sae_input", lambda tensor, hook: tensor * 2)])
    expected = relu_sae_reference(sae, 2 * x) + (x - relu_sae_reference(sae, x))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("args", "kwargs", "dtype_name"),
    [
        ((torch.float64,), {}, "float64"),
        (("cpu", torch.bfloat16), {}, "bfloat16"),
        ((), {"dtype": torch.float16}, "float16"),
    ],
)
def test_to_dtype_updates_cfg(args: tuple[object, ...], kwargs: dict[str, object], dtype_name: str) -> None:
    sae = SAE.from_dict({"architecture": "standard", "d_in": D_IN, "d_sae": D_SAE})
    assert sae.to(*args, **kwargs) is sae
    assert sae.cfg.dtype == dtype_name
    assert {p.dtype for p in sae.parameters()} == {getattr(torch, dtype_name)}
    assert sae.dtype == getattr(torch, dtype_name)


def test_to_float64_then_forward_matches_the_reference(x: torch.Tensor) -> None:
    sae = randomized_sae().to(torch.float32).to(torch.float64)
    assert sae.cfg.dtype == "float64"
    torch.testing.assert_close(sae(x), relu_sae_reference(sae, x), rtol=0, atol=1e-12)


def test_to_device_updates_cfg() -> None:
    sae = randomized_sae().to("meta")
    assert sae.cfg.device == "meta" and sae.W_enc.device.type == "meta"


def test_metadata_missing_keys_read_as_none() -> None:
    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE)
    assert cfg.metadata.hook_name is None
    assert cfg.metadata["model_name"] is None
    assert "hook_name" not in cfg.metadata
    assert not hasattr(cfg.metadata, "__array_interface__")


def test_metadata_accepts_attribute_and_item_assignment() -> None:
    metadata = SAEMetadata(model_name="gpt2")
    metadata.hook_name = "blocks.0.hook_resid_pre"
    metadata["custom_note"] = {"nested": [1, 2]}
    assert {key: value for key, value in metadata.to_dict().items() if key not in VERSION_KEYS} == {
        "model_name": "gpt2", "hook_name": "blocks.0.hook_resid_pre", "custom_note": {"nested": [1, 2]},
    }
    assert SAEConfig(d_in=D_IN, d_sae=D_SAE, metadata={"model_name": "gpt2"}).metadata.model_name == "gpt2"


def test_metadata_version_fields_are_filled_as_saelens_fills_them() -> None:
    assert SAEMetadata().sae_lens_version == SAEMetadata().sae_lens_training_version == SAELENS_VERSION
    assert SAEConfig(d_in=D_IN, d_sae=D_SAE).metadata.sae_lens_training_version == SAELENS_VERSION
    given = SAEMetadata(sae_lens_version="5.9.1", sae_lens_training_version="5.2.0")
    assert (given.sae_lens_version, given.sae_lens_training_version) == ("5.9.1", "5.2.0")


def test_metadata_copies_are_independent() -> None:
    metadata = SAEMetadata(custom_note={"nested": [1]})
    for duplicate in (copy.deepcopy(metadata), pickle.loads(pickle.dumps(metadata))):
        assert duplicate == metadata
        duplicate.custom_note["nested"].append(2)
        assert metadata.custom_note == {"nested": [1]}


def test_metadata_round_trips_through_cfg_json(tmp_path: Path) -> None:
    sae = randomized_sae()
    sae.cfg.metadata.hook_name = "blocks.3.hook_resid_post"
    sae.cfg.metadata.context_size = 64
    sae.cfg.metadata.custom_note = {"by": "tests", "values": [1, 2]}
    sae.save_model(tmp_path)
    written = json.loads((tmp_path / "cfg.json").read_text())["metadata"]
    assert written["hook_name"] == "blocks.3.hook_resid_post"
    assert written["custom_note"] == {"by": "tests", "values": [1, 2]}
    loaded = SAE.load_from_disk(tmp_path)
    assert loaded.cfg.metadata.hook_name == "blocks.3.hook_resid_post"
    assert loaded.cfg.metadata.context_size == 64
    assert loaded.cfg.metadata.custom_note == {"by": "tests", "values": [1, 2]}
    assert loaded.cfg.metadata.model_name is None
