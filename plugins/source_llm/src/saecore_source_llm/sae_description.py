"""How errors about SAEs spliced into models name the SAE, so that every such message reads alike."""

from __future__ import annotations

from typing import Any

from saecore.sae import SAE


def describe_sae(sae: SAE[Any]) -> str:
    """How errors name an SAE: its class and sizes, and its Neuronpedia id when it has one."""
    named = f", {sae.cfg.metadata.neuronpedia_id}" if sae.cfg.metadata.neuronpedia_id else ""
    return f"{type(sae).__name__}(d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}{named})"
