"""The standard SAE: ReLU encoder, linear decoder, L1 penalty weighted by decoder norms.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_standard.standard_sae import StandardSAE as StandardSAE
    from saecore_sae_standard.standard_sae import StandardSAEConfig as StandardSAEConfig
    from saecore_sae_standard.standard_sae import StandardTrainingSAE as StandardTrainingSAE
    from saecore_sae_standard.standard_sae import StandardTrainingSAEConfig as StandardTrainingSAEConfig

_EXPORTS = {
    "StandardSAE": "saecore_sae_standard.standard_sae",
    "StandardSAEConfig": "saecore_sae_standard.standard_sae",
    "StandardTrainingSAE": "saecore_sae_standard.standard_sae",
    "StandardTrainingSAEConfig": "saecore_sae_standard.standard_sae",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
