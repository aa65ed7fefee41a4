"""Language-model activations for saecore, and the SAELens-style v6 training runner.

The names below are imported on first use, so importing this package (which the entry
point does) stays cheap; transformer_lens, transformers and datasets are imported only
when a model is built or a dataset read.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "HookedSAETransformer": "saecore_source_llm.hooked_sae_transformer",
    "LLMSource": "saecore_source_llm.source",
    "LLMSourceConfig": "saecore_source_llm.config",
    "LanguageModelSAERunnerConfig": "saecore_source_llm.runner",
    "LanguageModelSAETrainingRunner": "saecore_source_llm.runner",
    "SAETrainingRunner": "saecore_source_llm.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'saecore_source_llm' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
