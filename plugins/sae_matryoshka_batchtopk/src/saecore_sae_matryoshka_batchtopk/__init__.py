"""Matryoshka BatchTopK: BatchTopK whose nested latent prefixes must each reconstruct the input on their own.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_matryoshka_batchtopk.config import (
        MatryoshkaBatchTopKTrainingSAEConfig as MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from saecore_sae_matryoshka_batchtopk.matryoshka_sae import (
        MatryoshkaBatchTopKTrainingSAE as MatryoshkaBatchTopKTrainingSAE,
    )

_EXPORTS = {
    "MatryoshkaBatchTopKTrainingSAE": "saecore_sae_matryoshka_batchtopk.matryoshka_sae",
    "MatryoshkaBatchTopKTrainingSAEConfig": "saecore_sae_matryoshka_batchtopk.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
