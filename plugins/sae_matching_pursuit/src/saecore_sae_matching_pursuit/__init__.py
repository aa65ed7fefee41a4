"""The matching pursuit SAE: a tied SAE whose encoder is greedy matching pursuit over the decoder rows.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_matching_pursuit.config import MatchingPursuitSAEConfig as MatchingPursuitSAEConfig
    from saecore_sae_matching_pursuit.config import (
        MatchingPursuitTrainingSAEConfig as MatchingPursuitTrainingSAEConfig,
    )
    from saecore_sae_matching_pursuit.matching_pursuit_sae import MatchingPursuitSAE as MatchingPursuitSAE
    from saecore_sae_matching_pursuit.matching_pursuit_sae import (
        MatchingPursuitTrainingSAE as MatchingPursuitTrainingSAE,
    )

_EXPORTS = {
    "MatchingPursuitSAE": "saecore_sae_matching_pursuit.matching_pursuit_sae",
    "MatchingPursuitSAEConfig": "saecore_sae_matching_pursuit.config",
    "MatchingPursuitTrainingSAE": "saecore_sae_matching_pursuit.matching_pursuit_sae",
    "MatchingPursuitTrainingSAEConfig": "saecore_sae_matching_pursuit.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
