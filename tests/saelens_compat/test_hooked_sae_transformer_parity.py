"""A SAELens user's HookedSAETransformer workflow runs on saecore with only the import changed.

The workflow follows SAELens's docs (load a model, load an SAE from a local folder, cache its
features, steer one, compare logits) and runs once with ``from sae_lens import ...`` and once
with ``from saecore import ...`` on the same tiny TransformerLens 3 model and SAE folder.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch
from saelens_compat_support import D_HEAD, D_IN, N_HEADS, Case, randomize_parameters

sae_lens = pytest.importorskip("sae_lens")
transformer_lens = pytest.importorskip("transformer_lens")
saecore = pytest.importorskip("saecore")
pytest.importorskip("saecore_source_llm")

FEATURE, STRENGTH = 7, 3.0
SAE_POINTS = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_output")


def saelens_workflow(library: str, sae_folder: Path, prompt: torch.Tensor) -> dict[str, Any]:
    """The steps of SAELens's HookedSAETransformer tutorial; ``library`` is the only thing that changes."""
    imported = importlib.import_module(library)
    HookedSAETransformer, SAE = imported.HookedSAETransformer, imported.SAE
    cfg = transformer_lens.HookedTransformerConfig(
        n_layers=4, d_model=D_IN, n_ctx=16, d_head=D_HEAD, n_heads=N_HEADS, d_vocab=40, act_fn="gelu",
        dtype=torch.float64, seed=0,
    )
    model = HookedSAETransformer(cfg)
    sae = SAE.load_from_disk(sae_folder, device="cpu")
    hook = sae.cfg.metadata.hook_name

    clean_logits = model(prompt)
    sae_logits, cache = model.run_with_cache_with_saes(prompt, saes=[sae])
    feature_acts = cache[f"{hook}.hook_sae_acts_post"]

    def steer(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        acts[..., FEATURE] += STRENGTH
        return acts

    steering = [(f"{hook}.hook_sae_acts_post", steer)]
    steered_logits = model.run_with_hooks_with_saes(prompt, saes=[sae], fwd_hooks=steering)
    sae.use_error_term = True
    exact_logits = model.run_with_saes(prompt, saes=[sae])
    return {
        "clean": clean_logits, "sae": sae_logits, "steered": steered_logits, "exact": exact_logits,
        "acts": feature_acts, "cache": {key: cache[key] for key in cache.keys() if ".hook_sae_" in key},
        "state": model.state_dict(),
    }


@pytest.mark.parametrize(
    "case",
    [pytest.param(Case("standard", {"dtype": "float64"}), id="standard-resid"),
     pytest.param(Case("topk", {"k": 6, "dtype": "float64"}), id="topk-resid"),
     pytest.param(Case("jumprelu", {"dtype": "float64", "reshape_activations": "hook_z"}), id="jumprelu-hook-z")],
)
def test_the_saelens_workflow_gives_the_same_results_on_saecore(case: Case, tmp_path: Path) -> None:
    sae = saecore.SAE.from_dict(case.config_dict())
    randomize_parameters(sae)
    sae.save_model(tmp_path)
    prompt = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(3))

    theirs = saelens_workflow("sae_lens", tmp_path, prompt)
    ours = saelens_workflow("saecore", tmp_path, prompt)

    hook = case.config_dict()["metadata"]["hook_name"]
    assert set(ours["cache"]) == set(theirs["cache"]) == {f"{hook}.{point}" for point in SAE_POINTS}
    for key, value in theirs["cache"].items():
        torch.testing.assert_close(ours["cache"][key], value, rtol=1e-10, atol=1e-10, msg=key)
    assert (ours["acts"] > 0).any()
    for name in ("clean", "sae", "steered", "exact"):
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-10, atol=1e-10, msg=name)
    assert not torch.allclose(ours["steered"], ours["sae"])
    torch.testing.assert_close(ours["exact"], ours["clean"], rtol=1e-12, atol=1e-12)
    assert ours["state"].keys() <= theirs["state"].keys()
