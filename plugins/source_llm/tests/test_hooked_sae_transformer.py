"""HookedSAETransformer on a tiny random TransformerLens 3 model, checked against a hand-written splice.

The reference is the same model run with a plain hook at the SAE's hook that computes the
ReLU SAE formula in float64 from the SAE's parameters; outputs, every cache entry and the
gradients must agree with it.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import torch

from saecore import SAE
from saecore.errors import UnknownNameError

TL_MAJOR = int(version("transformer-lens").split(".")[0])
pytestmark = pytest.mark.skipif(TL_MAJOR >= 4, reason="HookedSAETransformer is built for transformer-lens 3.x")

D_MODEL, N_HEADS, D_HEAD, D_SAE, D_VOCAB = 16, 4, 4, 32, 30
RESID = "blocks.1.hook_resid_pre"
HOOK_Z = "blocks.0.attn.hook_z"
FEATURE, STRENGTH = 3, 2.5
SAE_POINTS = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_output")


def make_model(dtype: torch.dtype = torch.float64) -> Any:
    from saecore_source_llm.hooked_sae_transformer import HookedSAETransformer
    from transformer_lens import HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=2, d_model=D_MODEL, n_ctx=12, d_head=D_HEAD, n_heads=N_HEADS,
                                  d_vocab=D_VOCAB, act_fn="gelu", dtype=dtype, seed=0)
    return HookedSAETransformer(cfg)


def make_sae(hook_name: str, **fields: Any) -> SAE[Any]:
    hook_z = hook_name.endswith("hook_z")
    sae = SAE.from_dict({"architecture": "standard", "d_in": D_MODEL, "d_sae": D_SAE, "dtype": "float64",
                         "reshape_activations": "hook_z" if hook_z else "none",
                         "metadata": {"hook_name": hook_name}, **fields})
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.5)
    return sae


def tokens() -> torch.Tensor:
    return torch.randint(0, D_VOCAB, (3, 6), generator=torch.Generator().manual_seed(1))


def steer(acts: torch.Tensor, hook: Any) -> torch.Tensor:
    acts = acts.clone()
    acts[..., FEATURE] += STRENGTH
    return acts


def reference(model: Any, sae: SAE[Any], steered: bool, use_error_term: bool) -> tuple[torch.Tensor, dict[str, Any]]:
    """Logits, SAE activations and SAE parameter gradients with the SAE written out by hand."""
    params = {name: p.detach().clone().requires_grad_(True) for name, p in sae.named_parameters()}
    seen: dict[str, torch.Tensor] = {}

    def splice(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        x = activation.flatten(-2) if sae.reshape_hook_z else activation
        pre = (x - params["b_dec"]) @ params["W_enc"] + params["b_enc"]
        acts = torch.relu(pre)
        clean_recons = acts @ params["W_dec"] + params["b_dec"]
        if steered:
            acts = acts + STRENGTH * torch.nn.functional.one_hot(torch.tensor(FEATURE), D_SAE)
        recons = acts @ params["W_dec"] + params["b_dec"]
        error = (x - clean_recons).detach()
        output = recons + error if use_error_term else recons
        if sae.reshape_hook_z:  # the error and the output are back in the hook's [..., heads, d_head] shape
            error, output = error.unflatten(-1, (N_HEADS, D_HEAD)), output.unflatten(-1, (N_HEADS, D_HEAD))
        seen.update(hook_sae_input=x, hook_sae_acts_pre=pre, hook_sae_acts_post=acts, hook_sae_recons=recons,
                    hook_sae_error=error, hook_sae_output=output)
        return output

    logits = model.run_with_hooks(tokens(), fwd_hooks=[(sae.cfg.metadata.hook_name, splice)])
    logits.sum().backward()
    grads = {name: p.grad for name, p in params.items()}
    return logits.detach(), {name: value.detach() for name, value in seen.items()} | {"grads": grads}


@pytest.mark.parametrize("use_error_term", [False, True], ids=["reconstruction", "error-term"])
@pytest.mark.parametrize("steered", [False, True], ids=["plain", "steered"])
@pytest.mark.parametrize("hook_name", [RESID, HOOK_Z])
def test_spliced_outputs_cache_and_gradients_match_the_hand_written_splice(
    hook_name: str, steered: bool, use_error_term: bool
) -> None:
    model = make_model()
    sae = make_sae(hook_name)
    expected_logits, expected = reference(model, sae, steered, use_error_term)
    model.add_sae(sae, use_error_term=use_error_term)
    _, cache = model.run_with_cache(tokens(), names_filter=lambda name: name.startswith(f"{hook_name}.hook_sae"))
    with model.hooks(fwd_hooks=[(f"{hook_name}.hook_sae_acts_post", steer)] if steered else []):
        logits = model(tokens())
        logits.sum().backward()
    model.reset_saes()

    torch.testing.assert_close(logits.detach(), expected_logits, rtol=1e-10, atol=1e-10)
    points = SAE_POINTS + (("hook_sae_error",) if use_error_term else ())
    assert sorted(cache.keys()) == sorted(f"{hook_name}.{point}" for point in points)
    if not steered:
        for point in points:
            torch.testing.assert_close(cache[f"{hook_name}.{point}"], expected[point], rtol=1e-10, atol=1e-10,
                                       msg=point)
    for name, parameter in sae.named_parameters():
        torch.testing.assert_close(parameter.grad, expected["grads"][name], rtol=1e-9, atol=1e-9, msg=name)


def test_error_term_keeps_the_output_exact_and_the_features_differentiable() -> None:
    model = make_model()
    sae = make_sae(RESID)
    clean = model(tokens())
    grads: dict[str, torch.Tensor] = {}
    with model.saes(saes=[sae], use_error_term=True):
        with model.hooks(bwd_hooks=[(f"{RESID}.hook_sae_acts_post", lambda g, hook: grads.setdefault("acts", g))]):
            spliced = model(tokens())
            spliced.sum().backward()
    torch.testing.assert_close(spliced, clean, rtol=1e-12, atol=1e-12)
    assert grads["acts"].shape == (3, 6, D_SAE) and grads["acts"].abs().sum() > 0
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0


def test_run_with_cache_with_saes_keeps_only_what_the_filter_asks_for() -> None:
    model = make_model()
    wanted = f"{RESID}.hook_sae_acts_post"
    _, cache = model.run_with_cache_with_saes(tokens(), saes=[make_sae(RESID)], names_filter=[wanted])
    assert list(cache.keys()) == [wanted]
    assert model.acts_to_saes == {}


def test_saes_context_restores_the_sae_it_displaced_with_its_settings() -> None:
    model = make_model()
    kept, temporary = make_sae(RESID), make_sae(RESID, d_sae=D_SAE * 2)
    model.add_sae(kept, use_error_term=True)
    clean = model(tokens())
    with model.saes(saes=temporary):
        assert model.acts_to_saes == {RESID: temporary}
        assert not torch.allclose(model(tokens()), clean)
    assert model.acts_to_saes == {RESID: kept}
    torch.testing.assert_close(model(tokens()), clean, rtol=0, atol=0)
    with model.saes(saes=[], reset_saes_end=True):
        pass
    model.reset_saes(RESID)
    assert model.acts_to_saes == {} and RESID in model.hook_dict
    assert sorted(kept.hook_dict) == sorted((*SAE_POINTS, "hook_sae_error"))
    assert kept.hook_sae_acts_post.name == "hook_sae_acts_post"


def test_the_model_does_not_own_the_sae_parameters() -> None:
    model = make_model()
    names = set(model.state_dict())
    model.add_sae(make_sae(RESID))
    assert set(model.state_dict()) == names
    assert sum(1 for _ in model.parameters()) == len([n for n, _ in make_model().named_parameters()])


def test_run_with_saes_and_run_with_hooks_with_saes_detach_afterwards() -> None:
    model = make_model()
    sae = make_sae(RESID)
    plain = model.run_with_saes(tokens(), saes=[sae])
    hooked = model.run_with_hooks_with_saes(tokens(), saes=[sae], fwd_hooks=[(f"{RESID}.hook_sae_acts_post", steer)])
    expected_plain, _ = reference(model, sae, steered=False, use_error_term=False)
    expected_hooked, _ = reference(model, sae, steered=True, use_error_term=False)
    torch.testing.assert_close(plain, expected_plain, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hooked.detach(), expected_hooked, rtol=1e-10, atol=1e-10)
    assert model.acts_to_saes == {} and not sae.hook_sae_acts_post.is_hooked


def test_a_sae_whose_width_differs_from_the_hook_names_both() -> None:
    model = make_model()
    with pytest.raises(ValueError, match=rf"{RESID} has width 16 but the SAE attached there "
                                         r"\(StandardSAE\(d_in=24, d_sae=8\)\) has d_in=24"):
        model.add_sae(SAE.from_dict({"architecture": "standard", "d_in": 24, "d_sae": 8, "dtype": "float64",
                                     "metadata": {"hook_name": RESID}}))
    assert model.acts_to_saes == {}


def test_a_width_the_config_does_not_tell_is_checked_on_the_first_pass() -> None:
    model = make_model()
    model.add_sae(SAE.from_dict({"architecture": "standard", "d_in": 5, "d_sae": 8, "dtype": "float64",
                                 "metadata": {"hook_name": "blocks.0.attn.hook_q"}}))
    with pytest.raises(ValueError, match=r"^blocks.0.attn.hook_q has width 4 but the SAE attached there "
                                         r"\(StandardSAE\(d_in=5, d_sae=8\)\) has d_in=5$"):
        model(tokens())


def test_an_unknown_hook_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError, match="the model has no hook named 'blocks.1.hook_resid_pr' to attach "
                                               r"StandardSAE\(d_in=16, d_sae=32\) at; close matches: "
                                               "blocks.1.hook_resid_pre"):
        make_model().add_sae(make_sae("blocks.1.hook_resid_pr"))


def test_a_sae_in_another_dtype_than_the_model_is_refused() -> None:
    model = make_model(torch.float32)
    with pytest.raises(ValueError, match=r"StandardSAE\(d_in=16, d_sae=32\) is on cpu/torch.float64 but the model "
                                         r"is on cpu/torch.float32; move it first: sae.to\(model.cfg.device, "
                                         r"model.cfg.dtype\)"):
        model.add_sae(make_sae(RESID))


def test_two_saes_on_one_hook_are_named() -> None:
    model = make_model()
    first, second = make_sae(RESID), make_sae(RESID, d_sae=8)
    model.add_sae(first)
    with pytest.raises(ValueError, match=rf"{RESID} already holds StandardSAE\(d_in=16, d_sae=32\); call "
                                         rf"reset_saes\('{RESID}'\) before adding StandardSAE\(d_in=16, d_sae=8\)"):
        model.add_sae(second)
    with pytest.raises(ValueError, match=rf"two SAEs for {RESID}: StandardSAE\(d_in=16, d_sae=32\) and "
                                         r"StandardSAE\(d_in=16, d_sae=8\); one hook takes one SAE"):
        model.run_with_saes(tokens(), saes=[first, second])
    assert model.acts_to_saes == {RESID: first}


def test_resetting_a_hook_without_a_sae_is_an_error() -> None:
    model = make_model()
    model.add_sae(make_sae(RESID))
    with pytest.raises(UnknownNameError, match=f"no SAE is attached at '{HOOK_Z}' to reset; attached at: {RESID}"):
        model.reset_saes([HOOK_Z])
    assert list(model.acts_to_saes) == [RESID]


def test_hooked_sae_transformer_is_exported_from_saecore(tmp_path: Path) -> None:
    from saecore_source_llm.hooked_sae_transformer import HookedSAETransformer

    import saecore

    assert saecore.HookedSAETransformer is HookedSAETransformer
    model = make_model()
    sae = make_sae(RESID)
    sae.save_model(tmp_path)
    loaded = saecore.SAE.load_from_disk(tmp_path)
    _, cache = model.run_with_cache_with_saes(tokens(), saes=[loaded])
    torch.testing.assert_close(cache[f"{RESID}.hook_sae_acts_post"],
                               reference(model, sae, steered=False, use_error_term=False)[1]["hook_sae_acts_post"],
                               rtol=1e-10, atol=1e-10)

