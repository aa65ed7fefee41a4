"""Shared pieces of the SAELens compatibility tests.

The tests move SAE folders between SAELens 6.x and saecore in one process and check
that both libraries compute the same thing. Everything here stays independent of the
code under test: parameters are randomised by name, outputs are checked against a
float64 re-implementation of the SAELens v6 formulas, and ``sae_lens`` is imported
inside functions so that this module imports in an environment without it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

ARCHITECTURES = ("standard", "gated", "jumprelu", "topk")
D_IN = 24
D_SAE = 48
N_HEADS = 4
D_HEAD = D_IN // N_HEADS
BATCH = 5
SEQ = 3
REL_TOL = 1e-5
LAYER_NORM_EPS = 1e-5

# Facts about the LLM an SAE was trained on; written by SAELens under cfg.json "metadata".
METADATA: dict[str, Any] = {
    "model_name": "gpt2-small",
    "hook_name": "blocks.3.hook_resid_pre",
    "context_size": 128,
    "prepend_bos": False,
    "dataset_path": "org/openwebtext-tokenized",
    "seqpos_slice": [1, None],
    "neuronpedia_id": "gpt2-small/3-res-test",
    "hook_head_index": None,
}
HOOK_Z_METADATA: dict[str, Any] = {**METADATA, "hook_name": "blocks.1.attn.hook_z"}

# The options every architecture takes, each set chosen so a wrong reading of the
# option changes the outputs (normalisation, b_dec pre-subtraction, dtype, hook_z shape).
COMMON_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "no-b-dec-in": {"apply_b_dec_to_input": False},
    "constant-norm-rescale": {"normalize_activations": "constant_norm_rescale"},
    "layer-norm": {"normalize_activations": "layer_norm"},
    "layer-norm-no-b-dec-in": {"normalize_activations": "layer_norm", "apply_b_dec_to_input": False},
    "expected-average-only-in": {"normalize_activations": "expected_average_only_in"},
    "float64": {"dtype": "float64"},
    "hook-z": {"reshape_activations": "hook_z"},
}
# TopK's own options; k must stay below D_SAE (SAELens's default k=100 would not fit).
TOPK_BASE: dict[str, Any] = {"k": 6}
TOPK_OPTIONS: dict[str, dict[str, Any]] = {
    "k1": {"k": 1},
    "rescale": {"rescale_acts_by_decoder_norm": True},
    "rescale-k17-no-b-dec-in": {"k": 17, "rescale_acts_by_decoder_norm": True, "apply_b_dec_to_input": False},
    "rescale-layer-norm": {"rescale_acts_by_decoder_norm": True, "normalize_activations": "layer_norm"},
    "rescale-constant-norm-rescale": {
        "rescale_acts_by_decoder_norm": True,
        "normalize_activations": "constant_norm_rescale",
    },
    "rescale-hook-z": {"rescale_acts_by_decoder_norm": True, "reshape_activations": "hook_z"},
}


@dataclass(frozen=True)
class Case:
    """One architecture with one set of non-default options."""

    architecture: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def hook_z(self) -> bool:
        return self.options.get("reshape_activations") == "hook_z"

    def config_dict(self) -> dict[str, Any]:
        """The cfg.json-shaped dict both libraries build this SAE from."""
        return {
            "architecture": self.architecture,
            "d_in": D_IN,
            "d_sae": D_SAE,
            **self.options,
            "metadata": dict(HOOK_Z_METADATA if self.hook_z else METADATA),
        }


def inference_cases() -> list[Any]:
    """Every (architecture, options) pair as pytest params with readable ids."""
    params = []
    for architecture in ARCHITECTURES:
        base = TOPK_BASE if architecture == "topk" else {}
        for name, options in COMMON_OPTIONS.items():
            case = Case(architecture, {**base, **options})
            params.append(pytest.param(case, id=f"{architecture}-{name}"))
        if architecture == "topk":
            for name, options in TOPK_OPTIONS.items():
                params.append(pytest.param(Case(architecture, {**base, **options}), id=f"topk-{name}"))
    return params


# -- random inputs and parameters ---------------------------------------------------------
def make_inputs(case: Case, seed: int = 0) -> list[torch.Tensor]:
    """A flat batch and a batch of sequences, off-centre so normalisation matters."""
    generator = torch.Generator().manual_seed(seed)
    feature_shape = (N_HEADS, D_HEAD) if case.hook_z else (D_IN,)
    shapes = [(BATCH, *feature_shape), (BATCH, SEQ, *feature_shape)]
    return [torch.randn(*shape, generator=generator) * 1.5 + 0.3 for shape in shapes]


def _random_parameter(name: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Values that make every parameter matter: uneven decoder norms, nonzero biases,
    thresholds inside the range of the pre-activations."""
    def normal(scale: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    if name == "W_enc":
        return normal(1.0 / D_IN**0.5)
    if name == "W_dec":
        row_scale = torch.rand(shape[0], 1, generator=generator, dtype=torch.float64) * 1.7 + 0.3
        return normal(1.0 / D_IN**0.5) * row_scale
    if name in ("b_enc", "b_dec", "b_gate", "b_mag", "r_mag"):
        return normal(0.3)
    if name == "threshold":
        return torch.rand(*shape, generator=generator, dtype=torch.float64) * 0.7 + 0.1
    raise AssertionError(f"no randomisation rule for parameter {name!r}; add one so the test covers it")


@torch.no_grad()
def randomize_parameters(module: nn.Module, seed: int = 1) -> None:
    """Overwrite every parameter of an SAE (either library's) with seeded random values."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in sorted(module.named_parameters()):
        parameter.copy_(_random_parameter(name, parameter.shape, generator))


def parameters_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


# -- an independent float64 implementation of the SAELens v6 inference formulas ----------
def reference_encode_decode(
    architecture: str, cfg: Mapping[str, Any], params: Mapping[str, torch.Tensor], x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature_acts, reconstruction) in float64, written from the formulas alone."""
    p = {name: tensor.detach().double() for name, tensor in params.items()}
    x = x.double()
    hook_z = cfg.get("reshape_activations", "none") == "hook_z"
    if hook_z:
        x = x.flatten(-2)
    mode = cfg.get("normalize_activations", "none")
    if mode == "constant_norm_rescale":
        scale = cfg["d_in"] ** 0.5 / x.norm(dim=-1, keepdim=True)
        x = x * scale
    elif mode == "layer_norm":
        mu = x.mean(dim=-1, keepdim=True)
        std = (x - mu).std(dim=-1, keepdim=True)
        x = (x - mu) / (std + LAYER_NORM_EPS)
    if cfg.get("apply_b_dec_to_input", True):
        x = x - p["b_dec"]

    decoder_norms = p["W_dec"].norm(dim=-1)
    rescale = architecture == "topk" and cfg.get("rescale_acts_by_decoder_norm", False)
    if architecture == "gated":
        gate = (x @ p["W_enc"] + p["b_gate"]) > 0
        magnitude = torch.relu(x @ (p["W_enc"] * p["r_mag"].exp()) + p["b_mag"])
        acts = gate * magnitude
    else:
        hidden = x @ p["W_enc"] + p["b_enc"]
        if architecture == "standard":
            acts = torch.relu(hidden)
        elif architecture == "jumprelu":
            acts = torch.relu(hidden) * (hidden > p["threshold"])
        elif architecture == "topk":
            ranked = hidden * decoder_norms if rescale else hidden
            top = ranked.topk(cfg["k"], dim=-1)
            acts = torch.zeros_like(ranked).scatter(-1, top.indices, torch.relu(top.values))
        else:
            raise AssertionError(f"no reference formula for architecture {architecture!r}")

    recon = (acts / decoder_norms if rescale else acts) @ p["W_dec"] + p["b_dec"]
    if mode == "constant_norm_rescale":
        recon = recon / scale
    elif mode == "layer_norm":
        recon = recon * std + mu
    if hook_z:
        recon = recon.unflatten(-1, (-1, D_HEAD))
    return acts, recon


# -- comparisons ------------------------------------------------------------------------------
def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    expected64 = expected.detach().double()
    return float((actual.detach().double() - expected64).norm() / expected64.norm().clamp_min(1e-30))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, dtype_must_match: bool = True) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if dtype_must_match:
        assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert float(expected.detach().double().norm()) > 0, f"{what}: expected output is all zeros"
    error = relative_error(actual, expected)
    assert error <= REL_TOL, f"{what}: relative error {error:.3g} exceeds {REL_TOL:g}"


def assert_sparse_but_not_empty(acts: torch.Tensor, what: str) -> None:
    """Guards the test itself: some latents fire and some do not, so the gate is exercised."""
    firing = float((acts != 0).double().mean())
    assert 0.0 < firing < 1.0, f"{what}: fraction of firing latents is {firing}; the test inputs are degenerate"


@torch.no_grad()
def assert_same_outputs(
    actual_sae: nn.Module,
    expected_sae: nn.Module,
    case: Case,
    reference_cfg: Mapping[str, Any] | None = None,
    reference_params: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """encode and forward of both SAEs agree on flat and sequence inputs, and with the
    float64 reference when its cfg and parameters are given."""
    for x in make_inputs(case):
        label = f"input {tuple(x.shape)}"
        expected_acts = expected_sae.encode(x)
        assert_sparse_but_not_empty(expected_acts, f"{label} encode")
        assert_close(actual_sae.encode(x), expected_acts, f"{label} encode")
        expected_out = expected_sae(x)
        assert_close(actual_sae(x), expected_out, f"{label} forward")
        if reference_cfg is not None and reference_params is not None:
            acts64, out64 = reference_encode_decode(case.architecture, reference_cfg, reference_params, x)
            assert_close(expected_acts, acts64, f"{label} encode vs float64 formula", dtype_must_match=False)
            assert_close(expected_out, out64, f"{label} forward vs float64 formula", dtype_must_match=False)


def json_normal(value: Any) -> Any:
    """Compare as the file does: tuples become lists."""
    return json.loads(json.dumps(value))


def read_cfg_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "cfg.json").read_text())


def assert_cfg_carries_file(loaded_cfg: Mapping[str, Any], file_cfg: Mapping[str, Any], who: str) -> None:
    """Every field and metadata entry of cfg.json survives loading, with the same value."""
    loaded = json_normal(dict(loaded_cfg))
    for key, value in file_cfg.items():
        if key in ("metadata", "device"):
            continue
        assert key in loaded, f"{who} dropped cfg field {key!r}"
        assert loaded[key] == value, f"{who}: cfg field {key!r} is {loaded[key]!r}, cfg.json has {value!r}"
    loaded_metadata = loaded.get("metadata") or {}
    for key, value in (file_cfg.get("metadata") or {}).items():
        assert key in loaded_metadata, f"{who} dropped metadata key {key!r}"
        assert loaded_metadata[key] == value, (
            f"{who}: metadata {key!r} is {loaded_metadata[key]!r}, cfg.json has {value!r}"
        )


# -- SAELens builders ----------------------------------------------------------------------
_SAELENS_CLASSES = {
    "standard": ("StandardSAE", "StandardSAEConfig"),
    "gated": ("GatedSAE", "GatedSAEConfig"),
    "jumprelu": ("JumpReLUSAE", "JumpReLUSAEConfig"),
    "topk": ("TopKSAE", "TopKSAEConfig"),
}


def saelens_metadata(values: Mapping[str, Any]) -> Any:
    from sae_lens.saes.sae import SAEMetadata

    return SAEMetadata(**dict(values))


def build_saelens_sae(case: Case) -> Any:
    """A SAELens inference SAE for ``case`` with every parameter randomised."""
    import sae_lens

    sae_name, cfg_name = _SAELENS_CLASSES[case.architecture]
    cfg_dict = case.config_dict()
    cfg_dict.pop("architecture")
    metadata = saelens_metadata(cfg_dict.pop("metadata"))
    cfg = getattr(sae_lens, cfg_name)(**cfg_dict, metadata=metadata)
    sae = getattr(sae_lens, sae_name)(cfg)
    randomize_parameters(sae)
    return sae
