"""EleutherAI sparsify's format: ``cfg.json`` + ``sae.safetensors``, one folder per hookpoint.

sparsify computes ``f = TopK_k(ReLU((x − b_dec) Wᵀ + b))`` with ``W = encoder.weight
[d_sae, d_in]`` and ``x̂ = f W_dec + b_dec`` with ``W_dec [d_sae, d_in]``: the SAELens
``topk`` architecture (without decoder-norm rescaling) once the encoder is transposed.
A transcoder (``transcode``) skips the ``b_dec`` subtraction and predicts its module's
output: the ``topk_transcoder`` architecture (``saecore-transcoders``), and with a skip
connection (``W_skip [d_out, d_in]``, ``skip_connection``) ``topk_skip_transcoder``. A skip
connection on an autoencoder, signed coders and the ``groupmax`` activation have no saecore
architecture and are refused by name.

The folder is named after the hookpoint (``layers.12``); it gives the TransformerLens hook.
A transcoder's hookpoint is its MLP (``layers.12.mlp``): it reads the MLP's input
(``blocks.12.ln2.hook_normalized``) and predicts its output (``blocks.12.hook_mlp_out``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from saecore.converters.tensors import dtype_name_of, require_tensors
from saecore.errors import SAEFileError
from saecore.io.converters import ConvertedSAE, FileLocator, SAEConverter
from saecore.io.sae_files import read_cfg_json, read_safetensors

SPARSIFY_CFG_FILENAME = "cfg.json"
SPARSIFY_WEIGHTS_FILENAME = "sae.safetensors"
_TENSORS = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
_MLP_HOOKPOINT = re.compile(r"(?:.*\.)?(?:layers|h)\.(\d+)\.mlp")
_HOOKPOINTS = (
    (re.compile(r"(?:.*\.)?(?:layers|h)\.(\d+)"), "blocks.{}.hook_resid_post"),
    (re.compile(r"(?:.*\.)?(?:layers|h)\.(\d+)\.mlp"), "blocks.{}.hook_mlp_out"),
    (re.compile(r"(?:.*\.)?(?:layers|h)\.(\d+)\.(?:self_attn|attn)"), "blocks.{}.hook_attn_out"),
    (re.compile(r"(?:.*\.)?(?:embed_tokens|wte)"), "hook_embed"),
)


class SparsifyConverter(SAEConverter):
    """Reads a sparsify sparse coder folder as a ``topk`` SAE or a TopK transcoder."""

    def convert(self, locate: FileLocator) -> ConvertedSAE:
        cfg_path = locate(SPARSIFY_CFG_FILENAME, True)
        weights_path = locate(SPARSIFY_WEIGHTS_FILENAME, True)
        assert cfg_path is not None and weights_path is not None
        raw = read_cfg_json(cfg_path)
        _refuse_unsupported(raw, cfg_path)
        tensors = read_safetensors(weights_path)
        require_tensors(tensors, _TENSORS, weights_path, "sparsify")
        transcode = bool(raw.get("transcode", False))
        skip = "W_skip" in tensors
        if raw.get("skip_connection") and not skip:
            raise SAEFileError(f"{cfg_path}: skip_connection = true, but {weights_path} holds no W_skip")
        if skip and not transcode:
            raise SAEFileError(f"{weights_path}: has a skip connection (W_skip) but {cfg_path} has transcode = false; "
                               "saecore has no architecture for an autoencoder with a skip connection")
        d_sae, d_in = tensors["encoder.weight"].shape
        if raw.get("d_in", d_in) != d_in:
            raise SAEFileError(f"{cfg_path}: d_in = {raw.get('d_in')} but {weights_path} holds encoder.weight "
                               f"of shape {list(tensors['encoder.weight'].shape)} (d_sae, d_in)")
        state_dict = {
            "W_enc": tensors["encoder.weight"].T.contiguous(),
            "b_enc": tensors["encoder.bias"],
            "W_dec": tensors["W_dec"],
            "b_dec": tensors["b_dec"],
            **({"W_skip": tensors["W_skip"]} if skip else {}),
        }
        architecture = ("topk_skip_transcoder" if skip else "topk_transcoder") if transcode else "topk"
        cfg_dict: dict[str, Any] = {
            "architecture": architecture,
            "d_in": d_in,
            **({"d_out": tensors["W_dec"].shape[1]} if transcode else {}),
            "d_sae": d_sae,
            "k": _positive_int(raw, "k", cfg_path),
            "rescale_acts_by_decoder_norm": False,
            "dtype": dtype_name_of(tensors["encoder.weight"], weights_path),
            "device": "cpu",
            "apply_b_dec_to_input": not transcode,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "metadata": _metadata(Path(cfg_path).parent.name, transcode),
        }
        return ConvertedSAE(cfg_dict=cfg_dict, state_dict=state_dict, sparsity=None,
                            cfg_source=str(cfg_path), weights_source=str(weights_path))


def _refuse_unsupported(raw: dict[str, Any], cfg_path: Path) -> None:
    activation = raw.get("activation", "topk")
    if activation != "topk":
        raise SAEFileError(f"{cfg_path}: activation = {activation!r}; only 'topk' sparse coders can be loaded")
    if raw.get("skip_connection") and not raw.get("transcode"):
        raise SAEFileError(f"{cfg_path}: skip_connection = true; saecore has no architecture for an autoencoder "
                           "with a skip connection (transcoders, transcode = true, may have one)")
    if raw.get("signed"):
        raise SAEFileError(f"{cfg_path}: signed = true; saecore has no architecture for it")


def _positive_int(raw: dict[str, Any], key: str, cfg_path: Path) -> int:
    value = raw.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SAEFileError(f"{cfg_path}: {key} = {value!r}; expected a positive integer")
    return value


def _metadata(hookpoint: str, transcode: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {"sparsify_hookpoint": hookpoint}
    mlp = _MLP_HOOKPOINT.fullmatch(hookpoint)
    if transcode and mlp:
        layer = mlp.group(1)
        return {**metadata, "hook_name": f"blocks.{layer}.ln2.hook_normalized",
                "hook_name_out": f"blocks.{layer}.hook_mlp_out"}
    for pattern, hook in _HOOKPOINTS:
        match = pattern.fullmatch(hookpoint)
        if match:
            metadata["hook_name"] = hook.format(*match.groups())
            break
    return metadata
