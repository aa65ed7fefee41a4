"""The JumpReLU SAE: a ReLU whose per-latent threshold is learned through straight-through estimators.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_jumprelu.jumprelu_sae import JumpReLUSAE as JumpReLUSAE
    from saecore_sae_jumprelu.jumprelu_sae import JumpReLUSAEConfig as JumpReLUSAEConfig
    from saecore_sae_jumprelu.jumprelu_sae import JumpReLUTrainingSAE as JumpReLUTrainingSAE
    from saecore_sae_jumprelu.jumprelu_sae import JumpReLUTrainingSAEConfig as JumpReLUTrainingSAEConfig

_EXPORTS = {
    "JumpReLUSAE": "saecore_sae_jumprelu.jumprelu_sae",
    "JumpReLUSAEConfig": "saecore_sae_jumprelu.jumprelu_sae",
    "JumpReLUTrainingSAE": "saecore_sae_jumprelu.jumprelu_sae",
    "JumpReLUTrainingSAEConfig": "saecore_sae_jumprelu.jumprelu_sae",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
