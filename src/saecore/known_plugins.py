"""Names our own plugin packages provide, so errors can say what to ``pip install``.

This is only a hint table for error messages; resolution always goes through the
registry, and our plugins register exactly like a third party's.

A user who installed the core from a source checkout (``pip install .``) may not be able
to install a plugin by name, as the plugins need not be published; the hint then also gives
the plugin's folder in that checkout. Where the core came from is what pip recorded in its
``direct_url.json`` (PEP 610).
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

ARCHITECTURE_PACKAGES = {
    "standard": "saecore-sae-standard",
    "gated": "saecore-sae-gated",
    "jumprelu": "saecore-sae-jumprelu",
    "topk": "saecore-sae-topk",
    "abstopk": "saecore-sae-abstopk",
    "matching_pursuit": "saecore-sae-matching-pursuit",
    "temporal": "saecore-sae-temporal",
    **{name: "saecore-transcoders" for name in (
        "transcoder", "skip_transcoder", "jumprelu_transcoder", "jumprelu_skip_transcoder", "topk_transcoder",
        "topk_skip_transcoder",
    )},
}
TRAINING_RECIPE_PACKAGES = {
    **{name: package for name, package in ARCHITECTURE_PACKAGES.items() if name != "temporal"},
    "batchtopk": "saecore-sae-batchtopk",
    "matryoshka_batchtopk": "saecore-sae-matryoshka-batchtopk",
}
SOURCE_PACKAGES = {"llm": "saecore-source-llm"}
# Formats of published SAEs whose converter ships with a plugin rather than the core.
TRANSCODERS_PACKAGE = "saecore-transcoders"
CONVERTER_PACKAGES = {
    "temporal": "saecore-sae-temporal",
    **dict.fromkeys(("mwhanna_transcoder", "gemma_2_transcoder", "mntss_clt_layer_transcoder"), TRANSCODERS_PACKAGE),
}


def _class_names(prefix: str) -> list[str]:
    return [f"{prefix}SAE", f"{prefix}SAEConfig", f"{prefix}TrainingSAE", f"{prefix}TrainingSAEConfig"]


CLASS_PACKAGES: dict[str, str] = {
    **{name: "saecore-sae-standard" for name in _class_names("Standard")},
    **{name: "saecore-sae-gated" for name in _class_names("Gated")},
    **{name: "saecore-sae-jumprelu" for name in _class_names("JumpReLU")},
    **{name: "saecore-sae-topk" for name in _class_names("TopK")},
    **{name: "saecore-sae-abstopk" for name in _class_names("AbsTopK")},
    **{name: "saecore-sae-matching-pursuit" for name in _class_names("MatchingPursuit")},
    **{name: "saecore-sae-temporal" for name in ("TemporalSAE", "TemporalSAEConfig")},
    **{name: "saecore-sae-batchtopk" for name in ("BatchTopKTrainingSAE", "BatchTopKTrainingSAEConfig")},
    **{name: "saecore-sae-matryoshka-batchtopk" for name in (
        "MatryoshkaBatchTopKTrainingSAE", "MatryoshkaBatchTopKTrainingSAEConfig")},
    **{f"{prefix}{name}": "saecore-transcoders"
       for prefix in ("", "Skip", "JumpReLU", "JumpReLUSkip", "TopK", "TopKSkip")
       for name in ("Transcoder", "TranscoderConfig", "TrainingTranscoder", "TrainingTranscoderConfig")},
    **{name: "saecore-source-llm" for name in (
        "CacheActivationsRunner", "CacheActivationsRunnerConfig", "PretokenizeRunner", "PretokenizeRunnerConfig",
        "pretokenize_runner",
        "HookedSAETransformer", "LLMSource", "LLMSourceConfig", "LanguageModelSAERunnerConfig",
        "LanguageModelSAETrainingRunner", "MultiSAETrainingRunner", "MultiSAETrainingRunnerConfig",
        "SAETrainingRunner", "SAETransformerBridge", "TopKFeatures",
        "ablate_features", "clamp_features", "feature_activation_scale", "feature_activations",
        "feature_attribution", "splice", "steer_feature", "top_k_features", "ActivationsStore", "EvalConfig",
        "MultiSAEEvaluator", "run_evals",
    )},
}


def install_hint(package: str) -> str:
    """``pip install PACKAGE``, and the checkout's plugin folder when the core was installed from a local path."""
    folder = local_plugin_folder(package, _core_direct_url())
    return f"pip install {package}" + (f" (from a source checkout: pip install {folder})" if folder else "")


def local_plugin_folder(package: str, direct_url: Mapping[str, Any] | None) -> str | None:
    """Where ``package``'s source is, given the core's PEP 610 record; None when the core came from an index.

    The absolute folder when the core was installed from a checkout that has it, else the
    folder relative to a checkout (``./plugins/sae_standard``).
    """
    from urllib.request import url2pathname  # only here: it imports the whole http stack

    url = urllib.parse.urlparse(str((direct_url or {}).get("url", "")))
    if url.scheme != "file":
        return None
    relative = Path("plugins") / package.removeprefix("saecore-").replace("-", "_")
    if "dir_info" in (direct_url or {}):
        folder = Path(url2pathname(url.path)) / relative
        if folder.is_dir():
            return str(folder)
    return f"./{relative.as_posix()}"


@functools.cache
def _core_direct_url() -> dict[str, Any] | None:
    try:
        text = distribution("saecore").read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    try:
        record = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None
