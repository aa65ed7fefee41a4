"""The dictionary_learning library's format: ``ae.pt`` (a state dict) + ``config.json``.

``config.json`` holds ``{"trainer": {...}, "buffer": {...}}``; ``trainer.dict_class`` names
the autoencoder class, which fixes the formula and the tensor names. ``ae.pt`` is read
without running its code (``pickled_state``).

Each class maps onto a saecore architecture with identical outputs:

- ``AutoEncoder``: ``ReLU((x − bias) Wᵀ + b)``, decoder ``+ bias`` → ``standard``.
- ``AutoEncoderNew`` (April update): no input centring, decoder bias → ``standard`` without
  ``apply_b_dec_to_input``.
- ``AutoEncoderTopK``: per-token top-k of ``ReLU`` pre-activations → ``topk``.
- ``BatchTopKSAE`` and ``MatryoshkaBatchTopKSAE``: at inference ``ReLU(h)·1[ReLU(h) > θ]`` with
  one learnt scalar ``θ`` → ``jumprelu`` with ``θ`` for every latent.
- ``JumpReluAutoEncoder``: ``ReLU(h·1[h > θ])`` without input centring → ``jumprelu``.
- ``GatedAutoEncoder``: gate ``1[x_enc + b_gate > 0]`` times ``ReLU(e^{r_mag}·x_enc + b_mag)`` → ``gated``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from saecore.converters.pickled_state import load_pickled_state_dict
from saecore.converters.tensors import dtype_name_of, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_cfg_json

DICTIONARY_LEARNING_CFG_FILENAME = "config.json"
DICTIONARY_LEARNING_WEIGHTS_FILENAME = "ae.pt"

Tensors = dict[str, torch.Tensor]


def _linear_layers(state: Tensors, b_dec_key: str) -> Tensors:
    """``nn.Linear`` encoder and decoder: weights are stored ``[out, in]``, SAELens wants ``[in, out]``."""
    return {
        "W_enc": state["encoder.weight"].T.contiguous(),
        "b_enc": state["encoder.bias"],
        "W_dec": state["decoder.weight"].T.contiguous(),
        "b_dec": state[b_dec_key],
    }


def _autoencoder(state: Tensors) -> Tensors:
    return _linear_layers(state, "bias")


def _autoencoder_new(state: Tensors) -> Tensors:
    return _linear_layers(state, "decoder.bias")


def _topk(state: Tensors) -> Tensors:
    return _linear_layers(state, "b_dec")


def _batch_topk(state: Tensors) -> Tensors:
    tensors = _linear_layers(state, "b_dec")
    tensors["threshold"] = _per_latent_threshold(state, tensors["W_enc"].shape[1])
    return tensors


def _matryoshka(state: Tensors) -> Tensors:
    tensors = {name: state[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    tensors["threshold"] = _per_latent_threshold(state, tensors["W_enc"].shape[1])
    return tensors


def _jumprelu(state: Tensors) -> Tensors:
    return {name: state[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")}


def _gated(state: Tensors) -> Tensors:
    return {
        "W_enc": state["encoder.weight"].T.contiguous(),
        "b_gate": state["gate_bias"],
        "b_mag": state["mag_bias"],
        "r_mag": state["r_mag"],
        "W_dec": state["decoder.weight"].T.contiguous(),
        "b_dec": state["decoder_bias"],
    }


def _per_latent_threshold(state: Tensors, d_sae: int) -> torch.Tensor:
    threshold = state["threshold"].float()
    return threshold.expand(d_sae).contiguous() if threshold.ndim == 0 else threshold


@dataclass(frozen=True)
class _DictClass:
    """How one dictionary_learning class maps onto a saecore architecture."""

    architecture: str
    apply_b_dec_to_input: bool
    tensors: tuple[str, ...]
    convert: Callable[[Tensors], Tensors]
    has_k: bool = False


_LINEAR = ("encoder.weight", "encoder.bias", "decoder.weight")
_PLAIN = ("W_enc", "b_enc", "W_dec", "b_dec")
DICT_CLASSES: dict[str, _DictClass] = {
    "AutoEncoder": _DictClass("standard", True, (*_LINEAR, "bias"), _autoencoder),
    "AutoEncoderNew": _DictClass("standard", False, (*_LINEAR, "decoder.bias"), _autoencoder_new),
    "AutoEncoderTopK": _DictClass("topk", True, (*_LINEAR, "b_dec"), _topk, has_k=True),
    "BatchTopKSAE": _DictClass("jumprelu", True, (*_LINEAR, "b_dec", "threshold"), _batch_topk),
    "MatryoshkaBatchTopKSAE": _DictClass("jumprelu", True, (*_PLAIN, "threshold"), _matryoshka),
    "JumpReluAutoEncoder": _DictClass("jumprelu", False, (*_PLAIN, "threshold"), _jumprelu),
    "GatedAutoEncoder": _DictClass(
        "gated", True, ("encoder.weight", "gate_bias", "mag_bias", "r_mag", "decoder.weight", "decoder_bias"), _gated),
}
# dictionary_learning's submodule names (resid_post_layer_3) → TransformerLens hook sites.
_SUBMODULE_SITES = {"resid_post": "hook_resid_post", "mlp_out": "hook_mlp_out", "attn_out": "hook_attn_out"}


class DictionaryLearningConverter(SAEConverter):
    """Reads a dictionary_learning trainer folder (``ae.pt`` + ``config.json``)."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        cfg_path = locate(DICTIONARY_LEARNING_CFG_FILENAME, True)
        weights_path = locate(DICTIONARY_LEARNING_WEIGHTS_FILENAME, True)
        assert cfg_path is not None and weights_path is not None
        config = read_cfg_json(cfg_path)
        trainer = config.get("trainer")
        if not isinstance(trainer, dict):
            raise SAEFileError(f"{cfg_path}: has no 'trainer' section; not a dictionary_learning config.json")
        dict_class = trainer.get("dict_class")
        if dict_class not in DICT_CLASSES:
            raise SAEFileError(f"{cfg_path}: trainer.dict_class = {dict_class!r} is not supported; "
                               f"allowed: {', '.join(DICT_CLASSES)}")
        spec = DICT_CLASSES[dict_class]
        state = load_pickled_state_dict(weights_path)
        require_tensors(state, spec.tensors, weights_path, f"dictionary_learning {dict_class}")
        state_dict = spec.convert(state)
        d_in, d_sae = state_dict["W_enc"].shape
        cfg_dict: dict[str, Any] = {
            "architecture": spec.architecture,
            "d_in": d_in,
            "d_sae": d_sae,
            "dtype": dtype_name_of(state_dict["W_enc"], weights_path),
            "device": "cpu",
            "apply_b_dec_to_input": spec.apply_b_dec_to_input,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": _metadata(config, trainer),
        }
        if spec.has_k:
            cfg_dict["k"] = _k(trainer, state, cfg_path)
            cfg_dict["rescale_acts_by_decoder_norm"] = False
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(cfg_path), weights_source=str(weights_path))


def _k(trainer: dict[str, Any], state: Tensors, cfg_path: Path) -> int:
    k = trainer.get("k")
    if k is None and "k" in state:
        k = int(state["k"].item())
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise SAEFileError(f"{cfg_path}: trainer.k = {k!r}; a top-k dictionary needs a positive integer k")
    return k


def _metadata(config: dict[str, Any], trainer: dict[str, Any]) -> dict[str, Any]:
    """What the trainer config says about the model and hook, in SAELens's metadata keys."""
    metadata: dict[str, Any] = {}
    if isinstance(trainer.get("lm_name"), str):
        metadata["model_name"] = trainer["lm_name"].split("/")[-1]
    hook_name = _hook_name(trainer.get("layer"), trainer.get("submodule_name"))
    if hook_name is not None:
        metadata["hook_name"] = hook_name
    buffer = config.get("buffer")
    if isinstance(buffer, dict) and isinstance(buffer.get("ctx_len"), int):
        metadata["context_size"] = buffer["ctx_len"]
    return metadata


def _hook_name(layer: Any, submodule_name: Any) -> str | None:
    """``blocks.{layer}.hook_resid_post`` unless the submodule names another site; SAELens assumes resid_post."""
    if not isinstance(layer, int):
        return None
    if submodule_name is None:
        return f"blocks.{layer}.hook_resid_post"
    for prefix, site in _SUBMODULE_SITES.items():
        if str(submodule_name).startswith(prefix):
            return f"blocks.{layer}.{site}"
    return None
