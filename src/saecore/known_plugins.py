"""Names our own plugin packages provide, so errors can say what to ``pip install``.

This is only a hint table for error messages; resolution always goes through the
registry, and our plugins register exactly like a third party's.
"""

from __future__ import annotations

ARCHITECTURE_PACKAGES = {
    "standard": "saecore-sae-standard",
    "gated": "saecore-sae-gated",
    "jumprelu": "saecore-sae-jumprelu",
    "topk": "saecore-sae-topk",
}
TRAINING_RECIPE_PACKAGES = {
    **ARCHITECTURE_PACKAGES,
    "batchtopk": "saecore-sae-batchtopk",
    "matryoshka_batchtopk": "saecore-sae-matryoshka-batchtopk",
}
SOURCE_PACKAGES = {"llm": "saecore-source-llm"}


def _class_names(prefix: str) -> list[str]:
    return [f"{prefix}SAE", f"{prefix}SAEConfig", f"{prefix}TrainingSAE", f"{prefix}TrainingSAEConfig"]


CLASS_PACKAGES: dict[str, str] = {
    **{name: "saecore-sae-standard" for name in _class_names("Standard")},
    **{name: "saecore-sae-gated" for name in _class_names("Gated")},
    **{name: "saecore-sae-jumprelu" for name in _class_names("JumpReLU")},
    **{name: "saecore-sae-topk" for name in _class_names("TopK")},
    **{name: "saecore-sae-batchtopk" for name in ("BatchTopKTrainingSAE", "BatchTopKTrainingSAEConfig")},
    **{name: "saecore-sae-matryoshka-batchtopk" for name in (
        "MatryoshkaBatchTopKTrainingSAE", "MatryoshkaBatchTopKTrainingSAEConfig")},
    **{name: "saecore-source-llm" for name in (
        "HookedSAETransformer", "LLMSource", "LLMSourceConfig", "LanguageModelSAERunnerConfig",
        "LanguageModelSAETrainingRunner", "SAETrainingRunner",
    )},
}
