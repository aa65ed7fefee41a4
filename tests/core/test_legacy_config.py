"""cfg.json files written before SAELens 6.0: detected, upgraded, and loaded with the right class."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.in_process import ArchitecturePlugin, FixtureTopKSAE, FixtureTopKSAEConfig
from fixtures.saes import randomized_sae, relu_sae_reference
from safetensors.torch import save_file

from saecore import SAE, SAEFileError
from saecore.io.legacy_config import is_pre_v6_config, upgrade_pre_v6_config
from saecore.plugin_manager import ENV_ONLY
from saecore.registry import reset_registry

AddPlugin = Callable[[Any, str], None]


def pre_v6_cfg(**changes: Any) -> dict[str, Any]:
    """A cfg.json as SAELens 3-5 wrote it (the shape of gpt2-small-res-jb), shrunk to tiny sizes."""
    cfg: dict[str, Any] = {
        "model_name": "gpt2-small",
        "hook_point": "blocks.2.hook_resid_pre",
        "hook_point_layer": 2,
        "hook_point_head_index": None,
        "dataset_path": "Skylion007/openwebtext",
        "is_dataset_tokenized": False,
        "context_size": 128,
        "d_in": 8,
        "d_sae": 16,
        "b_dec_init_method": "geometric_median",
        "expansion_factor": 2,
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "dtype": "torch.float32",
        "device": "cuda",
        "sae_lens_training_version": "2.1.3",
        "normalize_activations": False,
    }
    cfg.update(changes)
    return cfg


def write_folder(folder: Path, cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "sae_weights.safetensors"))
    return folder


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (pre_v6_cfg(), True),
        ({"d_in": 8, "d_sae": 16, "sae_lens_version": "5.9.1"}, True),
        ({"d_in": 8, "d_sae": 16, "sae_lens_version": "6.0.0rc0"}, False),
        ({"d_in": 8, "d_sae": 16, "metadata": {"sae_lens_version": "6.4.0"}}, False),
        ({"d_in": 8, "d_sae": 16, "metadata": {"sae_lens_version": "5.0.0"}}, True),
        ({"d_in": 8, "d_sae": 16, "metadata": {"saecore_version": "0.1.0", "sae_lens_version": "5.0.0"}}, False),
        ({"d_in": 8, "d_sae": 16, "metadata": {}}, False),
    ],
)
def test_pre_v6_configs_are_detected(cfg: dict[str, Any], expected: bool) -> None:
    assert is_pre_v6_config(cfg) is expected


def test_llm_keys_move_into_metadata_under_their_v6_names() -> None:
    new = upgrade_pre_v6_config(pre_v6_cfg(hook_point_head_index=3))
    assert new["architecture"] == "standard"
    assert new["metadata"]["hook_name"] == "blocks.2.hook_resid_pre"
    assert new["metadata"]["hook_head_index"] == 3
    assert new["metadata"]["model_name"] == "gpt2-small"
    assert new["metadata"]["context_size"] == 128
    assert new["metadata"]["prepend_bos"] is True
    assert not {"hook_point", "hook_name", "model_name", "hook_point_head_index"} & set(new)


def test_activation_fn_kwargs_k_means_topk() -> None:
    new = upgrade_pre_v6_config(pre_v6_cfg(activation_fn_str="topk", activation_fn_kwargs={"k": 3}))
    assert (new["architecture"], new["k"]) == ("topk", 3)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "expected_average_only_in"),
        (False, "none"),
        (None, "none"),
        ("constant_norm_rescale", "constant_norm_rescale"),
    ],
)
def test_normalize_activations_booleans_become_v6_names(value: Any, expected: str) -> None:
    assert upgrade_pre_v6_config(pre_v6_cfg(normalize_activations=value))["normalize_activations"] == expected


def test_hook_z_hook_point_means_hook_z_reshaping() -> None:
    new = upgrade_pre_v6_config(pre_v6_cfg(hook_point="blocks.1.attn.hook_z"))
    assert new["reshape_activations"] == "hook_z"


def test_pre_v6_standard_folder_loads_with_identical_outputs(tmp_path: Path) -> None:
    original = randomized_sae()
    folder = write_folder(tmp_path / "old", pre_v6_cfg(), original.state_dict())
    loaded = SAE.load_from_disk(folder, dtype="float64")
    assert loaded.cfg.metadata.hook_name == "blocks.2.hook_resid_pre"
    assert loaded.cfg.normalize_activations == "none"
    assert loaded.cfg.device == "cpu"
    x = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(loaded(x), relu_sae_reference(original, x), rtol=0, atol=1e-12)


def test_pre_v6_topk_folder_loads_as_the_topk_architecture(tmp_path: Path, add_plugin: AddPlugin) -> None:
    add_plugin(ArchitecturePlugin(("topk", FixtureTopKSAE, FixtureTopKSAEConfig)), "topk_stand_in")
    state = {k: v.float() for k, v in randomized_sae().state_dict().items()}
    cfg = pre_v6_cfg(activation_fn_str="topk", activation_fn_kwargs={"k": 3}, normalize_activations=True)
    loaded = SAE.load_from_disk(write_folder(tmp_path / "old_topk", cfg, state))
    assert isinstance(loaded, FixtureTopKSAE)
    assert loaded.cfg.k == 3
    assert loaded.cfg.normalize_activations == "expected_average_only_in"
    assert loaded.cfg.metadata.hook_name == "blocks.2.hook_resid_pre"
    for name, tensor in state.items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert int((loaded.encode(torch.randn(4, 8)) > 0).sum(-1).max()) <= 3


def test_pre_v6_topk_folder_loads_with_the_real_topk_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("saecore_sae_topk", reason="the saecore-sae-topk plugin is not installed")
    monkeypatch.setenv(ENV_ONLY, "sae_standard,sae_topk")
    reset_registry()
    original = randomized_sae()
    cfg = pre_v6_cfg(activation_fn_str="topk", activation_fn_kwargs={"k": 3}, dtype="float64")
    loaded = SAE.load_from_disk(write_folder(tmp_path / "old_topk", cfg, original.state_dict()))
    assert type(loaded).__module__.startswith("saecore_sae_topk")
    assert loaded.cfg.k == 3 and loaded.cfg.metadata.hook_name == "blocks.2.hook_resid_pre"
    x = torch.randn(5, 8, dtype=torch.float64)
    w_enc, w_dec, b_enc, b_dec = (t.detach() for t in (original.W_enc, original.W_dec, original.b_enc, original.b_dec))
    hidden_pre = (x - b_dec) @ w_enc + b_enc
    top = hidden_pre.topk(3, dim=-1)
    acts = torch.zeros_like(hidden_pre).scatter(-1, top.indices, torch.relu(top.values))
    torch.testing.assert_close(loaded(x), acts @ w_dec + b_dec, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"activation_fn_kwargs": [8]}, "field 'activation_fn_kwargs' = [8]: must be a mapping",
                     id="kwargs-list"),
        pytest.param({"hook_point": 5}, "field 'hook_point' = 5: must be a hook name", id="hook-point-int"),
        pytest.param({"activation_fn_str": "topk"}, "activation_fn 'topk' needs activation_fn_kwargs.k",
                     id="topk-without-k"),
        pytest.param({"activation_fn_str": "topk", "activation_fn_kwargs": {"k": None}},
                     "activation_fn 'topk' needs activation_fn_kwargs.k", id="topk-k-null"),
        pytest.param({"metadata": 5, "sae_lens_version": "5.1.0"}, "field 'metadata' = 5: must be a mapping",
                     id="metadata-int"),
    ],
)
def test_bad_pre_v6_config_names_the_file_and_field(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    folder = write_folder(tmp_path / "old", pre_v6_cfg(**changes), randomized_sae().state_dict())
    with pytest.raises(SAEFileError) as caught:
        SAE.load_from_disk(folder)
    assert str(caught.value).startswith(f"{folder / 'cfg.json'}: ") and expected in str(caught.value)
