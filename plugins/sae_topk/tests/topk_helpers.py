"""Build plugin SAEs that hold the same float64 parameters as a reference ``RefParams``."""

from __future__ import annotations

from typing import Any

import torch
from saecore_sae_topk.config import TopKSAEConfig, TopKTrainingSAEConfig
from saecore_sae_topk.topk_sae import TopKSAE
from saecore_sae_topk.topk_training_sae import TopKTrainingSAE
from topk_reference import RefOptions, RefParams


def _cfg_fields(p: RefParams, o: RefOptions) -> dict[str, Any]:
    return {
        "d_in": p.W_enc.shape[0],
        "d_sae": p.W_enc.shape[1],
        "k": o.k,
        "rescale_acts_by_decoder_norm": o.rescale,
        "apply_b_dec_to_input": o.apply_b_dec_to_input,
        "normalize_activations": o.normalize,
        "dtype": "float64",
    }


def load_params(sae: torch.nn.Module, p: RefParams) -> None:
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, name).copy_(getattr(p, name))


def inference_sae(p: RefParams, o: RefOptions) -> TopKSAE:
    sae = TopKSAE(TopKSAEConfig(**_cfg_fields(p, o)))
    load_params(sae, p)
    return sae


def training_sae(p: RefParams, o: RefOptions, **extra: Any) -> TopKTrainingSAE:
    cfg = TopKTrainingSAEConfig(**_cfg_fields(p, o), aux_loss_coefficient=o.aux_coefficient, **extra)
    sae = TopKTrainingSAE(cfg)
    load_params(sae, p)
    return sae


def leaf_copies(p: RefParams) -> RefParams:
    """Parameters that record gradients, for the reference's autograd."""
    return RefParams(*(t.clone().requires_grad_(True) for t in (p.W_enc, p.b_enc, p.W_dec, p.b_dec)))
