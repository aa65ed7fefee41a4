"""The gated SAE: a gate decides which latents fire, a magnitude path decides how much.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_gated.gated_sae import GatedSAE as GatedSAE
    from saecore_sae_gated.gated_sae import GatedSAEConfig as GatedSAEConfig
    from saecore_sae_gated.gated_sae import GatedTrainingSAE as GatedTrainingSAE
    from saecore_sae_gated.gated_sae import GatedTrainingSAEConfig as GatedTrainingSAEConfig

_EXPORTS = {
    "GatedSAE": "saecore_sae_gated.gated_sae",
    "GatedSAEConfig": "saecore_sae_gated.gated_sae",
    "GatedTrainingSAE": "saecore_sae_gated.gated_sae",
    "GatedTrainingSAEConfig": "saecore_sae_gated.gated_sae",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
