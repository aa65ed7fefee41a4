"""One tiny configuration per registered training recipe, for the checks that run every recipe.

The device checks (``tests/training/test_accelerator_dispatch.py`` here, ``tests/gpu`` on a
CUDA machine) train each recipe a few steps; a recipe registered without a case here fails
``test_every_registered_recipe_has_a_case``, so a new recipe cannot slip past them.
Shapes keep ``k`` at most ``d_sae / 16``, so BatchTopK and Matryoshka take the support
route on CPU and the CUDA run (dense) is compared against the other route.
"""

from __future__ import annotations

from typing import Any

import torch

from saecore import get_registry
from saecore.training_sae import TrainingSAE

D_IN = 16
D_SAE = 64
D_OUT = 12

RECIPE_CASES: dict[str, dict[str, Any]] = {
    "standard": {},
    "gated": {},
    "jumprelu": {},
    "topk": {"k": 4},
    "batchtopk": {"k": 4},
    "matryoshka_batchtopk": {"k": 4, "matryoshka_widths": [16, D_SAE]},
    "abstopk": {"k": 4},
    "matching_pursuit": {},
    "transcoder": {"d_out": D_OUT},
    "skip_transcoder": {"d_out": D_OUT},
    "jumprelu_transcoder": {"d_out": D_OUT},
    "jumprelu_skip_transcoder": {"d_out": D_OUT},
    "topk_transcoder": {"d_out": D_OUT, "k": 4},
    "topk_skip_transcoder": {"d_out": D_OUT, "k": 4},
}


def make_training_sae(recipe: str, seed: int = 0, **fields: Any) -> TrainingSAE[Any]:
    """Recipe ``recipe`` at its case's shape, with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    cfg = {"architecture": recipe, "d_in": D_IN, "d_sae": D_SAE, **RECIPE_CASES[recipe], **fields}
    return TrainingSAE.from_dict(cfg)


def installed_recipes() -> set[str]:
    """The training recipes installed packages register (not those a test adds in-process)."""
    recipes = get_registry().training_recipes
    return {name for name, entry in recipes.items() if entry.provider.distribution is not None}


def output_width(recipe: str) -> int:
    """The width of what the recipe reconstructs: ``d_out`` for a transcoder, else ``d_in``."""
    return int(RECIPE_CASES[recipe].get("d_out", D_IN))
