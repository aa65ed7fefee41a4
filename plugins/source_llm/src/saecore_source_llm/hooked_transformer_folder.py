"""A transformer-lens 3.x ``HookedTransformer`` from a local Hugging Face model folder.

``HookedTransformer.from_pretrained`` accepts only official model names and reaches the
hub for their configs. TransformerLens's own loaders do accept a local folder, but in
3.9 its GPT-2 config conversion reads ``n_ctx``, which transformers 5 no longer has. So
the GPT-2 config is converted here, other architectures go through TransformerLens's
converter, and the weights always go through TransformerLens's weight conversion
(``get_pretrained_state_dict`` with the loaded HF model), then the same processing
``from_pretrained`` applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from saecore.errors import ConfigError
from saecore_source_llm.hf_compat import dtype_kwargs

PROCESSING_DEFAULTS = {
    "fold_ln": True,
    "center_writing_weights": True,
    "center_unembed": True,
    "fold_value_biases": True,
    "refactor_factored_attn_matrices": False,
}


def gpt2_config(hf_config: Any) -> dict[str, Any]:
    """TransformerLens config fields of a transformers GPT2Config."""
    return {
        "d_model": hf_config.n_embd,
        "d_head": hf_config.n_embd // hf_config.n_head,
        "n_heads": hf_config.n_head,
        "d_mlp": hf_config.n_inner or 4 * hf_config.n_embd,
        "n_layers": hf_config.n_layer,
        "n_ctx": hf_config.n_positions,
        "eps": hf_config.layer_norm_epsilon,
        "d_vocab": hf_config.vocab_size,
        "act_fn": hf_config.activation_function,
        "use_attn_scale": getattr(hf_config, "scale_attn_weights", True),
        "use_local_attn": False,
        "scale_attn_by_inverse_layer_idx": getattr(hf_config, "scale_attn_by_inverse_layer_idx", False),
        "normalization_type": "LN",
    }


def hooked_transformer_from_folder(
    folder: Path, *, device: torch.device, dtype: torch.dtype, options: dict[str, Any]
) -> Any:
    import transformer_lens.loading_from_pretrained as loading
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    unknown = sorted(set(options) - set(PROCESSING_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"model_from_pretrained_kwargs: {', '.join(unknown)} cannot be applied when loading a HookedTransformer "
            f"from a local folder ({folder}); allowed: {', '.join(PROCESSING_DEFAULTS)}"
        )
    processing = {**PROCESSING_DEFAULTS, **options}
    hf_config = AutoConfig.from_pretrained(folder)
    architecture = (getattr(hf_config, "architectures", None) or [""])[0]
    if architecture == "GPT2LMHeadModel":
        cfg_dict = gpt2_config(hf_config)
    else:
        try:
            cfg_dict = loading.convert_hf_model_config(str(folder))
        except Exception as error:
            raise ConfigError(
                f"transformer-lens cannot convert the {architecture or 'unknown'} model in {folder} to a "
                f"HookedTransformer ({type(error).__name__}: {error}); set model_class_name to "
                "'TransformerBridge' or 'AutoModelForCausalLM'"
            ) from None
    cfg_dict.update(
        original_architecture=architecture,
        model_name=folder.name,
        tokenizer_name=str(folder),
        init_weights=False,
        device=str(device),
        n_devices=1,
        dtype=dtype,
        default_prepend_bos=True,
    )
    if processing["fold_ln"]:
        folded = {"LN": "LNPre", "RMS": "RMSPre"}
        cfg_dict["normalization_type"] = folded.get(cfg_dict["normalization_type"], cfg_dict["normalization_type"])
    cfg = HookedTransformerConfig.from_dict(cfg_dict)
    hf_model = AutoModelForCausalLM.from_pretrained(folder, **dtype_kwargs(dtype))
    state_dict = loading.get_pretrained_state_dict(str(folder), cfg, hf_model, dtype=dtype)
    del hf_model
    model = HookedTransformer(cfg, AutoTokenizer.from_pretrained(folder), move_to_device=False)
    model.load_and_process_state_dict(state_dict, **processing)
    return model.to(device, print_details=False).eval()
