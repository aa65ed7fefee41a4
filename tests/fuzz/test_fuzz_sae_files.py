"""Fuzzed cfg.json and safetensors files: each folder loads, or fails with a saecore error naming the file."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from fixtures.saes import randomized_sae
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save_file

from fuzz.inputs import JSON_VALUES, raises_only_named_errors
from saecore import SAE
from saecore.resolver import load_sae_folder

pytest.importorskip("saecore_sae_standard")
pytest.importorskip("saecore_sae_topk")

CFG_KEYS = ["architecture", "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
            "reshape_activations", "metadata", "k", "K", "apply_b_dec_to_inptu", "rescale_acts_by_decoder_norm",
            "activation_fn", "activation_fn_str", "activation_fn_kwargs", "hook_point", "hook_name",
            "sae_lens_version", "model_name"]
LEGACY_KEYS = ["activation_fn", "activation_fn_str", "activation_fn_kwargs", "hook_point", "hook_point_layer",
               "hook_point_head_index", "normalize_activations", "model_name", "sae_lens_version", "context_size"]
TENSOR_NAMES = ["W_enc", "W_dec", "b_enc", "b_dec", "threshold", "scaling_factor", "extra"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.bool]


def _saved(architecture: str, **fields: Any) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{architecture}-")) / "sae"
    randomized_sae(architecture, **fields).save_model(folder, sparsity=torch.zeros(16))
    return folder


TEMPLATES = {"standard": _saved("standard"), "topk": _saved("topk", k=4)}


def _copy(architecture: str, tmp: Path) -> Path:
    folder = tmp / "sae"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(TEMPLATES[architecture], folder)
    return folder


def _load_with_sparsity(folder: Path) -> tuple[Any, Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_sae_folder(folder)


def _load(folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SAE.load_from_disk(folder)


tensors_strategy = st.dictionaries(
    st.sampled_from(TENSOR_NAMES),
    st.tuples(st.lists(st.integers(0, 20), max_size=3), st.sampled_from(DTYPES)),
    max_size=5,
)


def _tensor(shape: list[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.ones(shape, dtype=dtype)


@given(architecture=st.sampled_from(sorted(TEMPLATES)),
       changes=st.dictionaries(st.sampled_from(CFG_KEYS) | st.text(max_size=8), JSON_VALUES, max_size=4),
       removed=st.lists(st.sampled_from(CFG_KEYS), max_size=3))
def test_fuzzed_cfg_json(tmp_path: Path, architecture: str, changes: dict[str, Any], removed: list[str]) -> None:
    folder = _copy(architecture, tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    for key in removed:
        cfg.pop(key, None)
    cfg.update(changes)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    raises_only_named_errors(lambda: _load(folder), str(folder / "cfg.json"), str(folder))


@given(changes=st.dictionaries(st.sampled_from(LEGACY_KEYS) | st.sampled_from(["d_in", "d_sae"]), JSON_VALUES,
                               max_size=4))
def test_fuzzed_pre_v6_cfg_json(tmp_path: Path, changes: dict[str, Any]) -> None:
    folder = _copy("standard", tmp_path)
    cfg = {"d_in": 8, "d_sae": 16, "dtype": "float64", "sae_lens_version": "5.0.0",
           "hook_point": "blocks.0.hook_resid_pre",
           "activation_fn_str": "relu", **changes}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    raises_only_named_errors(lambda: _load(folder), str(folder / "cfg.json"), str(folder))


@given(raw=st.binary(max_size=64) | st.sampled_from([b"[" * 100_000, b"{\"a\":" * 50_000, b"\xff\xfe{}", b"{}"]))
def test_fuzzed_cfg_json_bytes(tmp_path: Path, raw: bytes) -> None:
    folder = _copy("standard", tmp_path)
    (folder / "cfg.json").write_bytes(raw)
    raises_only_named_errors(lambda: _load(folder), str(folder / "cfg.json"))


@given(architecture=st.sampled_from(sorted(TEMPLATES)), tensors=tensors_strategy)
def test_fuzzed_weights(tmp_path: Path, architecture: str, tensors: dict[str, tuple[list[int], torch.dtype]]) -> None:
    folder = _copy(architecture, tmp_path)
    save_file({name: _tensor(shape, dtype) for name, (shape, dtype) in tensors.items()},
              str(folder / "sae_weights.safetensors"))
    raises_only_named_errors(lambda: _load(folder), str(folder / "sae_weights.safetensors"))


@given(shape=st.lists(st.integers(0, 40), max_size=2), dtype=st.sampled_from(DTYPES),
       name=st.sampled_from(["sparsity", "log_feature_sparsity", "other"]))
def test_fuzzed_sparsity(tmp_path: Path, shape: list[int], dtype: torch.dtype, name: str) -> None:
    folder = _copy("standard", tmp_path)
    save_file({name: _tensor(shape, dtype)}, str(folder / "sparsity.safetensors"))
    path = folder / "sparsity.safetensors"

    def load() -> None:
        _, _, sparsity = _load_with_sparsity(folder)
        assert sparsity is not None and sparsity.shape == (16,) and sparsity.is_floating_point(), (shape, dtype)

    raises_only_named_errors(load, str(path))


@given(which=st.sampled_from(["cfg.json", "sae_weights.safetensors", "sparsity.safetensors"]),
       cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4))
def test_fuzzed_file_bytes(tmp_path: Path, which: str, cut: int, flips: list[tuple[int, int]]) -> None:
    folder = _copy("standard", tmp_path)
    data = bytearray((folder / which).read_bytes())
    for position, mask in flips:
        data[position % len(data)] ^= mask
    (folder / which).write_bytes(bytes(data[:len(data) - cut]))
    raises_only_named_errors(lambda: _load_with_sparsity(folder), str(folder / which))
