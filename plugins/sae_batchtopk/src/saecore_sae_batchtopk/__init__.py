"""BatchTopK: keep the top k·B activations of a whole batch; save as a JumpReLU SAE with a learned threshold.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_batchtopk.batchtopk_sae import BatchTopKTrainingSAE as BatchTopKTrainingSAE
    from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig as BatchTopKTrainingSAEConfig

_EXPORTS = {
    "BatchTopKTrainingSAE": "saecore_sae_batchtopk.batchtopk_sae",
    "BatchTopKTrainingSAEConfig": "saecore_sae_batchtopk.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
