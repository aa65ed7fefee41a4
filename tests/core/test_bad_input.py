"""Loading broken SAE folders and building bad configs: one-line errors naming the file or field."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from fixtures.saes import randomized_sae
from safetensors.torch import load_file, save_file

from saecore import SAE, ConfigError, SAEConfig, SAEFileError, UnknownNameError
from saecore.config.sae_config import NormalizeActivations
from saecore.dtypes import DTYPES_BY_NAME
from saecore.plugin_manager import ENV_ONLY
from saecore.registry import reset_registry
from saecore.resolver import load_sae_folder

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "sae"
    randomized_sae().save_model(path)
    return path


def edit_cfg(folder: Path, **changes: Any) -> None:
    """Set keys of cfg.json; a value of ``...`` deletes the key."""
    cfg = json.loads((folder / CFG).read_text())
    for key, value in changes.items():
        if value is ...:
            del cfg[key]
        else:
            cfg[key] = value
    (folder / CFG).write_text(json.dumps(cfg))


def edit_tensors(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    tensors = load_file(str(folder / WEIGHTS))
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS))


def load_error(folder: Path, expected: type[Exception] = SAEFileError, **kwargs: Any) -> str:
    with pytest.raises(expected) as caught:
        SAE.load_from_disk(folder, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"\x00not a safetensors file" * 4, id="garbage"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated-half"),
        pytest.param(lambda data: data[:6], id="truncated-in-header-length"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_corrupt_or_truncated_weights_name_the_file(folder: Path, damage: Callable[[bytes], bytes]) -> None:
    weights = folder / WEIGHTS
    weights.write_bytes(damage(weights.read_bytes()))
    message = load_error(folder)
    assert message.startswith(f"{weights}: corrupt or truncated safetensors file")


def test_missing_weights_file_names_it(folder: Path) -> None:
    (folder / WEIGHTS).unlink()
    assert load_error(folder) == f"{folder / WEIGHTS}: no such file"


def test_cfg_json_that_is_not_json_names_the_file(folder: Path) -> None:
    (folder / CFG).write_text('{"d_in": 8,')
    assert load_error(folder).startswith(f"{folder / CFG}: not valid JSON (")


def test_cfg_json_that_is_not_an_object_names_the_file(folder: Path) -> None:
    (folder / CFG).write_text("[8, 16]")
    assert load_error(folder) == f"{folder / CFG}: expected a JSON object, found list"


def test_cfg_json_missing_d_in_names_file_and_field(folder: Path) -> None:
    edit_cfg(folder, d_in=...)
    assert load_error(folder) == f"{folder / CFG}: missing required field 'd_in'"


def test_cfg_json_with_out_of_range_value_names_the_field(folder: Path) -> None:
    edit_cfg(folder, d_sae=-3)
    assert load_error(folder) == f"{folder / CFG}: field 'd_sae' = -3: Input should be greater than 0"


def test_cfg_json_with_a_value_outside_a_choice_lists_the_allowed_values(folder: Path) -> None:
    edit_cfg(folder, normalize_activations="bogus")
    message = load_error(folder)
    assert message.startswith(f"{folder / CFG}: field 'normalize_activations' = 'bogus': Input should be 'none', ")
    assert all(f"'{allowed}'" in message for allowed in get_args(NormalizeActivations))


def test_cfg_json_with_metadata_that_is_not_an_object_names_file_and_field(folder: Path) -> None:
    edit_cfg(folder, metadata=["not", "a", "mapping"])
    message = load_error(folder)
    assert message.startswith(f"{folder / CFG}: field 'metadata'")


def test_tensor_shape_disagreeing_with_cfg_names_tensor_and_both_shapes(folder: Path) -> None:
    edit_tensors(folder, lambda tensors: tensors.__setitem__("b_enc", torch.zeros(17)))
    message = load_error(folder)
    assert message.startswith(f"{folder / WEIGHTS}: tensor 'b_enc' has shape [17]")
    assert message.endswith("needs [16]")


def test_d_sae_in_cfg_disagreeing_with_every_tensor_names_the_cfg_values(folder: Path) -> None:
    edit_cfg(folder, d_sae=32)
    message = load_error(folder)
    assert "(d_in=8, d_sae=32)" in message
    assert "has shape [16, 8]" in message and "needs [32, 8]" in message


def test_missing_tensor_is_named(folder: Path) -> None:
    edit_tensors(folder, lambda tensors: tensors.pop("b_enc"))
    message = load_error(folder)
    assert message.startswith(f"{folder / WEIGHTS}: missing tensor(s) ['b_enc'] needed by architecture 'standard'")


def test_unexpected_tensor_is_named(folder: Path) -> None:
    edit_tensors(folder, lambda tensors: tensors.__setitem__("W_extra", torch.zeros(2)))
    assert load_error(folder) == f"{folder / WEIGHTS}: unexpected tensor(s) ['W_extra'] for architecture 'standard'"


def test_tensor_with_a_non_float_dtype_is_named(folder: Path) -> None:
    edit_tensors(folder, lambda tensors: tensors.__setitem__("W_enc", tensors["W_enc"].to(torch.int64)))
    message = load_error(folder)
    assert message.startswith(f"{folder / WEIGHTS}: tensor 'W_enc' has dtype torch.int64")


def test_corrupt_sparsity_file_names_it(folder: Path) -> None:
    (folder / "sparsity.safetensors").write_bytes(b"junk")
    assert load_error(folder).startswith(f"{folder / 'sparsity.safetensors'}: corrupt or truncated safetensors file")


def test_architecture_that_no_plugin_provides(folder: Path) -> None:
    edit_cfg(folder, architecture="nonexistent")
    message = load_error(folder, UnknownNameError)
    assert message == f"{folder / CFG}: unknown architecture 'nonexistent' (installed: standard)"


def test_missing_architecture_key(folder: Path) -> None:
    edit_cfg(folder, architecture=...)
    assert load_error(folder) == f"{folder / CFG}: missing required key 'architecture'"


def test_dtype_that_does_not_exist_in_cfg_json(folder: Path) -> None:
    edit_cfg(folder, dtype="float13")
    assert load_error(folder) == (
        f"{folder / CFG}: field 'dtype' = 'float13': unknown dtype 'float13'; "
        f"allowed: {', '.join(DTYPES_BY_NAME)}"
    )


def test_dtype_argument_that_does_not_exist_is_not_blamed_on_cfg_json(folder: Path) -> None:
    message = load_error(folder, ConfigError, dtype="float13")
    assert "float13" in message and "allowed: float32" in message
    assert CFG not in message


def test_unknown_key_in_cfg_json_is_kept_in_metadata(folder: Path) -> None:
    edit_cfg(folder, written_by="another tool")
    assert SAE.load_from_disk(folder).cfg.metadata.written_by == "another tool"


def test_dtype_that_does_not_exist_in_python_config_names_field_and_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"(?s)dtype.*unknown dtype 'float13'; allowed: float32, float64"):
        SAEConfig(d_in=8, d_sae=16, dtype="float13")


def test_unknown_field_is_rejected_when_constructing_a_config_in_python() -> None:
    standard_config_class = type(SAE.from_dict({"architecture": "standard", "d_in": 8, "d_sae": 16}).cfg)
    for config_class in (SAEConfig, standard_config_class):
        with pytest.raises(ValueError, match="bogus"):
            config_class(d_in=8, d_sae=16, bogus=1)


def test_bad_value_assigned_to_a_config_is_rejected() -> None:
    config = SAEConfig(d_in=8, d_sae=16)
    with pytest.raises(ValueError, match="unknown dtype 'float13'"):
        config.dtype = "float13"
    assert config.dtype == "float32"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"dtype": "float13"}, "SAEConfig: field 'dtype' = 'float13': unknown dtype 'float13'"),
        ({"bogus": 1}, "SAEConfig: unknown field 'bogus' (value 1)"),
    ],
)
def test_python_config_errors_are_one_line_config_errors(fields: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SAEConfig(d_in=8, d_sae=16, **fields)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize("value", [5, [1], None, {"name": "standard"}])
def test_architecture_that_is_not_a_name(folder: Path, value: Any) -> None:
    edit_cfg(folder, architecture=value)
    message = load_error(folder)
    assert str(folder / CFG) in message and "'architecture'" in message and "string" in message


@pytest.mark.parametrize("field", ["d_in", "d_sae"])
@pytest.mark.parametrize("value", [1e30, 2**62, 10**30])
def test_size_too_large_to_allocate_names_the_bound(folder: Path, field: str, value: Any) -> None:
    edit_cfg(folder, **{field: value})
    message = load_error(folder)
    assert str(folder / CFG) in message and "d_in * d_sae" in message and "at most 2**40" in message


@pytest.mark.parametrize("field", ["d_in", "d_sae"])
def test_size_given_as_a_boolean_is_refused(folder: Path, field: str) -> None:
    edit_cfg(folder, **{field: True})
    message = load_error(folder)
    assert f"'{field}' = True" in message and "boolean" in message


def test_integral_float_sizes_still_load(folder: Path) -> None:
    edit_cfg(folder, d_in=8.0, d_sae=16.0)
    assert SAE.load_from_disk(folder).cfg.d_sae == 16


def test_deeply_nested_cfg_json_names_the_file(folder: Path) -> None:
    (folder / CFG).write_text("[" * 100_000 + "]" * 100_000)
    message = load_error(folder)
    assert str(folder / CFG) in message and "nested too deeply" in message


def with_topk_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("saecore_sae_topk", reason="the saecore-sae-topk plugin is not installed")
    monkeypatch.setenv(ENV_ONLY, "sae_standard,sae_topk")
    reset_registry()


@pytest.mark.parametrize(("key", "close"), [("K", "k"), ("apply_b_dec_to_inptu", "apply_b_dec_to_input")])
def test_unknown_key_close_to_a_field_warns_with_the_close_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, close: str
) -> None:
    with_topk_plugin(monkeypatch)
    path = tmp_path / "topk"
    randomized_sae("topk", k=4).save_model(path)
    edit_cfg(path, **{key: 8})
    with pytest.warns(UserWarning, match=f"unknown key '{key}'.*did you mean '{close}'"):
        sae = SAE.load_from_disk(path)
    assert sae.cfg.metadata[key] == 8


def test_unknown_key_far_from_every_field_does_not_warn(folder: Path) -> None:
    import warnings

    edit_cfg(folder, neuronpedia_link="x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SAE.load_from_disk(folder)


def test_k_given_as_a_boolean_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with_topk_plugin(monkeypatch)
    path = tmp_path / "topk"
    randomized_sae("topk", k=4).save_model(path)
    edit_cfg(path, k=True)
    message = load_error(path)
    assert "'k' = True" in message and "boolean" in message


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        pytest.param(torch.zeros(15), "shape [15]; expected [16]", id="short"),
        pytest.param(torch.zeros(4, 4), "shape [4, 4]; expected [16]", id="2d"),
        pytest.param(torch.zeros(16, dtype=torch.int64), "dtype torch.int64; expected a float dtype", id="int"),
    ],
)
def test_sparsity_file_of_the_wrong_shape_or_dtype(folder: Path, tensor: torch.Tensor, expected: str) -> None:
    save_file({"sparsity": tensor}, str(folder / "sparsity.safetensors"))
    with pytest.raises(SAEFileError) as caught:
        load_sae_folder(folder)
    assert str(folder / "sparsity.safetensors") in str(caught.value) and expected in str(caught.value)
