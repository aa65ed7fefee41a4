"""How wide a module's output activation is, where the module or the model's config tells it.

``splice`` checks an SAE's ``d_in`` against this before any forward pass. Layers say their own
width (``nn.Linear.out_features``, GPT-2's ``Conv1D.nf``, ``nn.Embedding.embedding_dim``, a layer
norm's ``normalized_shape``). A decoder block, and the attention and MLP inside it, write to the
residual stream, so their width is the config's hidden size; a decoder block is an entry of the
module list that holds ``config.num_hidden_layers`` entries. Anything else returns None and is
checked on the first forward pass instead.
"""

from __future__ import annotations

from typing import Any

from torch import nn

_RESIDUAL_WRITERS = ("Attention", "MLP", "Mlp")


def module_output_width(model: nn.Module, module_name: str, module: nn.Module) -> int | None:
    """The last dimension of ``module``'s output (its first element, for a tuple), or None when unknown."""
    own = _layer_width(module)
    if own is not None:
        return own
    hidden_size, layers = _residual_config(model)
    if hidden_size is None or layers is None:
        return None
    parent_name, _, last = module_name.rpartition(".")
    if last.isdigit() and _is_block_list(model.get_submodule(parent_name), layers):
        return hidden_size
    block_name, _, _ = parent_name.rpartition(".")
    in_block = parent_name.rpartition(".")[2].isdigit() and _is_block_list(model.get_submodule(block_name), layers)
    if in_block and type(module).__name__.endswith(_RESIDUAL_WRITERS):
        return hidden_size
    return None


def _layer_width(module: nn.Module) -> int | None:
    for attribute in ("out_features", "nf", "embedding_dim"):
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    shape = getattr(module, "normalized_shape", None)
    return int(shape[-1]) if isinstance(shape, tuple) and shape else None


def _residual_config(model: nn.Module) -> tuple[int | None, int | None]:
    config: Any = getattr(model, "config", None)
    if config is None:
        return None, None
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden_size = getattr(text_config, "hidden_size", None)
    layers = getattr(text_config, "num_hidden_layers", None)
    return (hidden_size if isinstance(hidden_size, int) else None), (layers if isinstance(layers, int) else None)


def _is_block_list(module: nn.Module, layers: int) -> bool:
    return isinstance(module, nn.ModuleList) and len(module) == layers
