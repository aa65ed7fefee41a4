"""Every public name of SAELens's user-facing modules imports from saecore's same path, or the guide says why not.

A name counts as documented when it is quoted in the first column of a table under
"## Name by name" in docs/saelens.md.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import pytest

sae_lens = pytest.importorskip("sae_lens")

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "saelens.md"
SAELENS_MODULES = (
    "sae_lens",
    "sae_lens.evals",
    "sae_lens.config",
    "sae_lens.registry",
    "sae_lens.saes",
    "sae_lens.util",
    "sae_lens.loading.pretrained_sae_loaders",
    "sae_lens.loading.pretrained_saes_directory",
    "sae_lens.training.activations_store",
    "sae_lens.training.sae_trainer",
    "sae_lens.training.activation_scaler",
    "sae_lens.training.upload_saes_to_huggingface",
    "sae_lens.training.optim",
    "sae_lens.cache_activations_runner",
    "sae_lens.pretokenize_runner",
    "sae_lens.llm_sae_training_runner",
    "sae_lens.multi_sae_training_runner",
    "sae_lens.load_model",
    "sae_lens.tokenization_and_batching",
    "sae_lens.analysis.hooked_sae_transformer",
    "sae_lens.analysis.sae_transformer_bridge",
    "sae_lens.analysis.neuronpedia_integration",
)


def saes_modules() -> list[str]:
    import sae_lens.saes

    return [f"sae_lens.saes.{module.name}" for module in pkgutil.iter_modules(sae_lens.saes.__path__)]


def public_names(module: ModuleType) -> list[str]:
    """``__all__``, or else the classes and functions the module defines itself."""
    declared = getattr(module, "__all__", None)
    if declared:
        return list(declared)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    ]


def documented_names() -> set[str]:
    """The identifiers quoted in the first column of the guide's "Name by name" tables."""
    section = GUIDE.read_text().split("\n## Name by name\n", 1)[1]
    names: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        first_column = line.split("|")[1]
        for quoted in re.findall(r"`([^`]+)`", first_column):
            names.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", quoted))
    return names


def imports_from_saecore(saelens_module: str, name: str) -> bool:
    try:
        module = importlib.import_module(saelens_module.replace("sae_lens", "saecore", 1))
        getattr(module, name)
    except (ImportError, AttributeError):
        return False
    return True


def test_every_saelens_name_is_ported_or_documented() -> None:
    documented = documented_names()
    gaps: list[str] = []
    for module_name in (*SAELENS_MODULES, *saes_modules()):
        module = importlib.import_module(module_name)
        for name in public_names(module):
            if imports_from_saecore(module_name, name) or name in documented:
                continue
            gaps.append(f"{module_name}.{name}")
    assert not gaps, "neither importable from saecore's same path nor in docs/saelens.md:\n" + "\n".join(gaps)


def test_the_guide_parse_finds_ported_and_unported_rows() -> None:
    expected = {"register_sae_class", "ExplainedVarianceCalculator", "validate_pretokenized_dataset_tokenizer"}
    assert expected <= documented_names()


def test_the_saes_package_serves_every_name_sae_lens_saes_exports() -> None:
    import sae_lens.saes

    import saecore.saes

    for name in sae_lens.saes.__all__:
        assert getattr(saecore.saes, name).__name__ == name
