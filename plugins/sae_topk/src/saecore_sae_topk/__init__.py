"""The TopK SAE: keep the k largest pre-activations per input, decode sparsely, train with AuxK.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_topk.config import TopKSAEConfig as TopKSAEConfig
    from saecore_sae_topk.config import TopKTrainingSAEConfig as TopKTrainingSAEConfig
    from saecore_sae_topk.topk_sae import TopKSAE as TopKSAE
    from saecore_sae_topk.topk_training_sae import TopKTrainingSAE as TopKTrainingSAE

_EXPORTS = {
    "TopKSAE": "saecore_sae_topk.topk_sae",
    "TopKSAEConfig": "saecore_sae_topk.config",
    "TopKTrainingSAE": "saecore_sae_topk.topk_training_sae",
    "TopKTrainingSAEConfig": "saecore_sae_topk.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
