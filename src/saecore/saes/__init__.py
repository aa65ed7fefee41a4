"""SAELens's ``sae_lens.saes`` package: one module per architecture, as in SAELens.

Each module serves the classes of the plugin package that provides the architecture;
the core's own contracts are in ``saecore.saes.sae``. The package itself serves the names
SAELens's ``sae_lens.saes`` exports (``from saecore.saes import TopKSAE``): the core's
contracts on first access, the rest from the plugin that registers them.
"""

from __future__ import annotations

from typing import Any

from saecore.lazy_exports import lazy_exports
from saecore.plugin_exports import plugin_export

_CORE_EXPORTS = {
    "SAE": "saecore.sae",
    "SAEConfig": "saecore.config.sae_config",
    "TrainingSAE": "saecore.training_sae",
    "TrainingSAEConfig": "saecore.config.sae_config",
}
_PLUGIN_EXPORTS = frozenset(
    f"{family}{suffix}"
    for family in ("AbsTopK", "Standard", "Gated", "JumpReLU", "TopK", "MatchingPursuit")
    for suffix in ("SAE", "SAEConfig", "TrainingSAE", "TrainingSAEConfig")
) | frozenset(
    (
        "BatchTopKTrainingSAE",
        "BatchTopKTrainingSAEConfig",
        "MatryoshkaBatchTopKTrainingSAE",
        "MatryoshkaBatchTopKTrainingSAEConfig",
        "TemporalSAE",
        "TemporalSAEConfig",
        *(f"{name}{suffix}" for name in ("Transcoder", "SkipTranscoder", "JumpReLUTranscoder",
                                         "JumpReLUSkipTranscoder") for suffix in ("", "Config")),
    )
)
_core_attribute, _core_dir = lazy_exports(__name__, _CORE_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _CORE_EXPORTS:
        return _core_attribute(name)
    if name in _PLUGIN_EXPORTS:
        return plugin_export(__name__, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*_core_dir(), *_PLUGIN_EXPORTS})
