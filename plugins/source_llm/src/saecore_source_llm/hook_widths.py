"""How wide a TransformerLens hook's activation is, read from the model's config.

Attaching an SAE checks its ``d_in`` against this width, so a wrong SAE fails at ``add_sae``
rather than deep inside the first forward pass. Hooks not listed here (attention patterns,
per-head query/key/value inputs, ...) return None and are checked on the first pass instead.
Both TransformerLens 3's ``HookedTransformerConfig`` and TransformerLens 4's
``TransformerBridgeConfig`` carry ``d_model``, ``d_mlp``, ``n_heads`` and ``d_head``; the bridge's
own names (``hook_in``, ``mlp.hook_out``, ...) sit beside the TransformerLens 3 names here.
"""

from __future__ import annotations

from typing import Any

from saecore.sae import SAE

_RESIDUAL_IN_BLOCK = frozenset({
    "hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "hook_in", "hook_out",
    "attn.hook_in", "attn.hook_out", "mlp.hook_in", "mlp.hook_out", "ln1.hook_normalized", "ln2.hook_normalized",
})
_MLP_HIDDEN_IN_BLOCK = frozenset({"mlp.hook_pre", "mlp.hook_post"})
_RESIDUAL_OUTSIDE_BLOCKS = frozenset({"hook_embed", "hook_pos_embed", "ln_final.hook_normalized"})


def transformer_lens_hook_width(cfg: Any, hook_name: str, sae: SAE[Any]) -> int | None:
    """The width ``sae`` reads at ``hook_name`` (heads × d_head for a ``hook_z`` SAE at ``attn.hook_z``)."""
    block, _, inside = hook_name.partition(".")
    layer, _, local = inside.partition(".")
    if block != "blocks" or not layer.isdigit():
        return int(cfg.d_model) if hook_name in _RESIDUAL_OUTSIDE_BLOCKS else None
    if local in _RESIDUAL_IN_BLOCK:
        return int(cfg.d_model)
    if local in _MLP_HIDDEN_IN_BLOCK and cfg.d_mlp is not None:
        return int(cfg.d_mlp)
    if local == "attn.hook_z":
        return int(cfg.n_heads * cfg.d_head) if sae.reshape_hook_z else int(cfg.d_head)
    return None
