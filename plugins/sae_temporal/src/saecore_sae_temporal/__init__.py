"""The temporal SAE: codes predicted from earlier positions by attention, plus sparse novel codes.

The public classes below are imported on first use, so importing this package (which
the entry point does) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saecore.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from saecore_sae_temporal.config import TemporalSAEConfig as TemporalSAEConfig
    from saecore_sae_temporal.temporal_sae import TemporalSAE as TemporalSAE

_EXPORTS = {
    "TemporalSAE": "saecore_sae_temporal.temporal_sae",
    "TemporalSAEConfig": "saecore_sae_temporal.config",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
