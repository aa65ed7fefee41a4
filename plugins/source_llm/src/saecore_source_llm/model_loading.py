"""Building the hooked model a config names, or wrapping one passed from Python.

``model_class_name="auto"`` picks what SAELens users get: a ``HookedTransformer`` where
transformer-lens 3.x is installed, the ``TransformerBridge`` with 4.x (which has no
HookedTransformer), and plain transformers when transformer-lens is missing.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from saecore.dtypes import dtype_from_name
from saecore.errors import ConfigError
from saecore_source_llm.config import LLMSourceConfig
from saecore_source_llm.hf_compat import dtype_kwargs
from saecore_source_llm.hooked_model import HookedModel, TransformerLensModel, TransformersModel

HOOKED_TRANSFORMER = "HookedTransformer"
BRIDGE = "TransformerBridge"
TRANSFORMERS = "AutoModelForCausalLM"


def transformer_lens_major() -> int | None:
    try:
        return int(version("transformer-lens").split(".")[0])
    except PackageNotFoundError:
        return None


def resolve_model_class(requested: str) -> str:
    """The concrete model class for ``model_class_name``, checked against what is installed."""
    major = transformer_lens_major()
    if requested == "auto":
        if major is None:
            return TRANSFORMERS
        return HOOKED_TRANSFORMER if major < 4 else BRIDGE
    if requested == HOOKED_TRANSFORMER and (major is None or major >= 4):
        installed = "not installed" if major is None else f"{version('transformer-lens')} is installed"
        raise ConfigError(f"model_class_name='HookedTransformer' needs transformer-lens 3.x ({installed}); "
                          "use 'TransformerBridge' with transformer-lens 4, or 'AutoModelForCausalLM'")
    if requested == BRIDGE and major is None:
        raise ConfigError("model_class_name='TransformerBridge' needs transformer-lens: pip install transformer-lens")
    return requested


def load_model(cfg: LLMSourceConfig, device: torch.device) -> HookedModel:
    """The model ``cfg`` names (or holds), on ``device`` unless it was passed in already placed.

    Its forward passes get ``cfg.model_kwargs``.
    """
    model = wrap_model(cfg.model, cfg) if cfg.model is not None else _load_named_model(cfg, device)
    model.forward_kwargs = dict(cfg.model_kwargs)
    return model


def _load_named_model(cfg: LLMSourceConfig, device: torch.device) -> HookedModel:
    kind = resolve_model_class(cfg.model_class_name)
    options = dict(cfg.model_from_pretrained_kwargs) if cfg.model_from_pretrained_kwargs is not None else (
        {"center_writing_weights": False} if kind == HOOKED_TRANSFORMER else {}
    )
    dtype = dtype_from_name(options.pop("dtype", None) or options.pop("torch_dtype", None) or cfg.model_dtype)
    folder = Path(cfg.model_name).expanduser()
    local = folder.is_dir()
    if cfg.model_name.startswith((".", "/", "~")) and not local:
        raise ConfigError(f"model_name={cfg.model_name!r}: no such model folder")
    if kind == HOOKED_TRANSFORMER:
        if local:
            from saecore_source_llm.hooked_transformer_folder import hooked_transformer_from_folder

            model = hooked_transformer_from_folder(folder, device=device, dtype=dtype, options=options)
        else:
            from transformer_lens import HookedTransformer

            model = HookedTransformer.from_pretrained(cfg.model_name, device=str(device), dtype=dtype, **options)
        return TransformerLensModel(model, _tokenizer(cfg, model.tokenizer), cfg.model_name, kind)
    if kind == BRIDGE:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            str(folder) if local else cfg.model_name, device=str(device), dtype=dtype, **options
        )
        return TransformerLensModel(bridge, _tokenizer(cfg, bridge.tokenizer), cfg.model_name, kind)
    from transformers import AutoModelForCausalLM

    name = str(folder) if local else cfg.model_name
    hf_model = AutoModelForCausalLM.from_pretrained(name, **dtype_kwargs(dtype), **options).to(device).eval()
    return TransformersModel(hf_model, _tokenizer(cfg, None, fallback_name=name), cfg.model_name)


def wrap_model(model: Any, cfg: LLMSourceConfig) -> HookedModel:
    """A model object from Python, used where it is (it is not moved or cast).

    A transformers model has no tokenizer attached; unless ``cfg.tokenizer`` is set, the
    tokenizer is loaded from the local folder the model was loaded from, if any.
    """
    class_names = {klass.__name__ for klass in type(model).__mro__}
    if BRIDGE in class_names or "BridgeCore" in class_names:
        kind = BRIDGE
    elif HOOKED_TRANSFORMER in class_names or "HookedRootModule" in class_names:
        kind = HOOKED_TRANSFORMER
    elif isinstance(model, torch.nn.Module):
        kind = TRANSFORMERS
    else:
        raise ConfigError(f"model must be a HookedTransformer, a TransformerBridge or a torch/transformers model, "
                          f"got {type(model).__name__}")
    if cfg.model_class_name not in ("auto", kind):
        raise ConfigError(f"model_class_name={cfg.model_class_name!r} but the model object is a {kind} "
                          f"({type(model).__name__}); set model_class_name='auto' or {kind!r}")
    name = cfg.model_name if "model_name" in cfg.model_fields_set else _object_name(model)
    if kind == TRANSFORMERS:
        folder = getattr(getattr(model, "config", None), "_name_or_path", None)
        local_folder = folder if isinstance(folder, str) and folder and Path(folder).is_dir() else None
        return TransformersModel(model, _tokenizer(cfg, getattr(model, "tokenizer", None), local_folder), name)
    return TransformerLensModel(model, _tokenizer(cfg, model.tokenizer), name, kind)


def _object_name(model: Any) -> str:
    tl_config = getattr(model, "cfg", None)
    hf_config = getattr(model, "config", None)
    for value in (getattr(tl_config, "model_name", None), getattr(hf_config, "_name_or_path", None)):
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _tokenizer(cfg: LLMSourceConfig, model_tokenizer: Any, fallback_name: str | None = None) -> Any:
    """``cfg.tokenizer`` (an object, or a name for AutoTokenizer), else the model's own."""
    if cfg.tokenizer is not None and not isinstance(cfg.tokenizer, str):
        return cfg.tokenizer
    name = cfg.tokenizer if isinstance(cfg.tokenizer, str) else None
    if name is None and model_tokenizer is not None:
        return model_tokenizer
    name = name or fallback_name
    if name is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)
