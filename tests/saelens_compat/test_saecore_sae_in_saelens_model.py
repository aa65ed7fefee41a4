"""A saecore SAE spliced into SAELens's own HookedSAETransformer caches and steers like the formula says.

The reference runs the same tiny TransformerLens model with a plain hook at the SAE's hook
that computes the SAE by hand in float64 (saelens_compat_support's formulas).
"""

from __future__ import annotations

import copy
import io
import pickle
from typing import Any

import pytest
import torch
from saelens_compat_support import (
    D_HEAD,
    D_IN,
    N_HEADS,
    Case,
    parameters_of,
    randomize_parameters,
    reference_encode_decode,
)

sae_lens = pytest.importorskip("sae_lens")
transformer_lens = pytest.importorskip("transformer_lens")
saecore = pytest.importorskip("saecore")

SAE_OUTPUT_NAMES = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_output")
FEATURE, STRENGTH = 5, 4.0
CASES = [
    pytest.param(Case(architecture, {**extra, "dtype": "float64", **options}), id=f"{architecture}-{name}")
    for architecture, extra in (("standard", {}), ("jumprelu", {}), ("topk", {"k": 6}))
    for name, options in (("resid", {}), ("hook-z", {"reshape_activations": "hook_z"}))
]


def tiny_model_config() -> Any:
    return transformer_lens.HookedTransformerConfig(
        n_layers=4, d_model=D_IN, n_ctx=16, d_head=D_HEAD, n_heads=N_HEADS, d_vocab=40, act_fn="gelu",
        dtype=torch.float64, seed=0,
    )


def tokens() -> torch.Tensor:
    return torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(0))


def reference_run(
    model: Any, case: Case, params: dict[str, torch.Tensor], steer: bool, use_error_term: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and SAE activations with the SAE written out by hand at its hook."""
    seen: dict[str, torch.Tensor] = {}
    cfg = case.config_dict()

    def splice(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        acts, recons = reference_encode_decode(case.architecture, cfg, params, activation)
        steered = recons
        if steer:
            direction = params["W_dec"][FEATURE].double() * STRENGTH
            steered = recons + (direction.unflatten(-1, (N_HEADS, D_HEAD)) if case.hook_z else direction)
            acts = acts.clone()
            acts[..., FEATURE] += STRENGTH
        output = steered + (activation - recons) if use_error_term else steered
        seen.update(input=activation, acts_post=acts, recons=steered, output=output, error=activation - recons)
        return output

    logits = model.run_with_hooks(tokens(), fwd_hooks=[(cfg["metadata"]["hook_name"], splice)])
    return logits, seen


def add_to_feature(acts: torch.Tensor, hook: Any) -> torch.Tensor:
    acts = acts.clone()
    acts[..., FEATURE] += STRENGTH
    return acts


def flat(tensor: torch.Tensor, case: Case) -> torch.Tensor:
    return tensor.flatten(-2) if case.hook_z else tensor


@pytest.mark.parametrize("use_error_term", [False, True], ids=["no-error-term", "error-term"])
@pytest.mark.parametrize("case", CASES)
def test_saecore_sae_in_saelens_hooked_sae_transformer(case: Case, use_error_term: bool) -> None:
    model = sae_lens.HookedSAETransformer(tiny_model_config())
    sae = saecore.SAE.from_dict(case.config_dict())
    randomize_parameters(sae)
    params = parameters_of(sae)
    hook = sae.cfg.metadata.hook_name
    expected_names = {f"{hook}.{name}" for name in SAE_OUTPUT_NAMES} | (
        {f"{hook}.hook_sae_error"} if use_error_term else set())

    for steer in (False, True):
        expected_logits, expected = reference_run(model, case, params, steer, use_error_term)
        model.add_sae(sae, use_error_term=use_error_term)
        steering = [(f"{hook}.hook_sae_acts_post", add_to_feature)] if steer else []
        with model.hooks(fwd_hooks=steering):
            logits, cache = model.run_with_cache(tokens())
        model.reset_saes()

        assert expected_names <= set(cache), f"missing from the cache: {sorted(expected_names - set(cache))}"
        torch.testing.assert_close(logits, expected_logits, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(cache[f"{hook}.hook_sae_input"], flat(expected["input"], case), rtol=0, atol=0)
        torch.testing.assert_close(cache[f"{hook}.hook_sae_acts_post"], expected["acts_post"], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(cache[f"{hook}.hook_sae_recons"], flat(expected["recons"], case),
                                   rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(cache[f"{hook}.hook_sae_output"], expected["output"], rtol=1e-9, atol=1e-9)
        if use_error_term:
            torch.testing.assert_close(cache[f"{hook}.hook_sae_error"], expected["error"], rtol=1e-9, atol=1e-9)

        sae.use_error_term = use_error_term
        hooked = model.run_with_hooks_with_saes(tokens(), saes=[sae], fwd_hooks=steering)
        sae.use_error_term = False
        torch.testing.assert_close(hooked, expected_logits, rtol=1e-9, atol=1e-9)
    assert not any(point.is_hooked for point in sae.hook_points())


def test_transformer_lens_counts_saecore_hook_points_and_they_still_pickle() -> None:
    sae = saecore.SAE.from_dict(Case("standard").config_dict())
    point = sae.hook_sae_acts_post
    assert isinstance(point, transformer_lens.hook_points.HookPoint) and type(point) is saecore.HookPoint
    buffer = io.BytesIO()
    torch.save(sae, buffer)
    buffer.seek(0)
    for clone in (pickle.loads(pickle.dumps(sae)), copy.deepcopy(sae), torch.load(buffer, weights_only=False)):
        assert type(clone.hook_sae_acts_post) is saecore.HookPoint
        assert clone.hook_dict["hook_sae_acts_post"] is clone.hook_sae_acts_post
