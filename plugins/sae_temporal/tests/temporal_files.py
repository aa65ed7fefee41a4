"""Folders in the published temporal layout (``<model>/layer_<N>/temporal``), written offline for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file


def write_published_folder(
    root: Path, params: dict[str, torch.Tensor], *, d_in: int, exp_factor: int, n_heads: int, bottleneck_factor: int,
    n_attn_layers: int, kval_topk: int | None, scaling_factor: float, layer: int = 12, dtype: str = "float32",
) -> Path:
    """Write ``conf.yaml`` and ``latest_ckpt.safetensors`` for SAE tensors named as the saecore/SAELens state dict."""
    folder = root / "gemma-2-2B" / f"layer_{layer}" / "temporal"
    folder.mkdir(parents=True)
    conf: dict[str, Any] = {
        "llm": {"dimin": d_in, "name": "gemma-2-2b"},
        "data": {"dtype": dtype},
        "sae": {
            "exp_factor": exp_factor, "n_heads": n_heads, "n_attn_layers": n_attn_layers,
            "bottleneck_factor": bottleneck_factor, "sae_diff_type": "topk", "kval_topk": kval_topk,
            "tied_weights": "W_enc" not in params, "scaling_factor": scaling_factor,
        },
    }
    (folder / "conf.yaml").write_text(yaml.safe_dump(conf))
    renamed = {"W_dec": "D", "b_dec": "b", "W_enc": "E"}
    tensors = {renamed.get(name, name): tensor.to(torch.float32).contiguous() for name, tensor in params.items()}
    save_file(tensors, str(folder / "latest_ckpt.safetensors"))
    return folder
