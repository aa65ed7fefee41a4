"""The AbsTopK SAE: each input keeps its k latents of largest ``|h|``, with their signs.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_abstopk.abstopk_sae import AbsTopKSAE as AbsTopKSAE
    from saecore_sae_abstopk.abstopk_training_sae import AbsTopKTrainingSAE as AbsTopKTrainingSAE
    from saecore_sae_abstopk.config import AbsTopKSAEConfig as AbsTopKSAEConfig
    from saecore_sae_abstopk.config import AbsTopKTrainingSAEConfig as AbsTopKTrainingSAEConfig

_EXPORTS = {
    "AbsTopKSAE": "saecore_sae_abstopk.abstopk_sae",
    "AbsTopKSAEConfig": "saecore_sae_abstopk.config",
    "AbsTopKTrainingSAE": "saecore_sae_abstopk.abstopk_training_sae",
    "AbsTopKTrainingSAEConfig": "saecore_sae_abstopk.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
