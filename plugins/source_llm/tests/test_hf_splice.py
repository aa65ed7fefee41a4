"""``splice`` on a tiny random Hugging Face GPT-2, checked against a hand-written splice in float64.

The reference is the same model with a plain forward hook on the same module that computes the
ReLU SAE formula from the SAE's parameters; logits, every cache entry and the gradient of a
logit with respect to the features must agree with it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from saecore_source_llm.hf_splice import splice
from torch import nn

from saecore import SAE
from saecore.errors import UnknownNameError

D_MODEL, D_SAE, VOCAB = 32, 48, 100
BLOCK, ATTENTION, MLP = "transformer.h.1", "transformer.h.0.attn", "transformer.h.0.mlp"
FEATURE, STRENGTH = 5, 3.0
SAE_POINTS = ("hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_output")


@pytest.fixture(scope="module")
def model() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=D_MODEL, n_head=2, n_positions=16, vocab_size=VOCAB, bos_token_id=0,
                        eos_token_id=0)
    return GPT2LMHeadModel(config).to(torch.float64).eval()


def make_sae(d_in: int = D_MODEL, dtype: str = "float64", **fields: Any) -> SAE[Any]:
    sae = SAE.from_dict({"architecture": "standard", "d_in": d_in, "d_sae": D_SAE, "dtype": dtype, **fields})
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.5)
    return sae


def input_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))


def logits_of(model: nn.Module) -> torch.Tensor:
    logits: torch.Tensor = model(input_ids()).logits
    return logits


def reference(
    model: nn.Module, module_name: str, sae: SAE[Any], use_error_term: bool, steered: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and SAE activations with the SAE written out by hand, plus d(logits[0, -1, 0]) / d(features)."""
    W_enc, b_enc, W_dec, b_dec = (sae.get_parameter(name).detach() for name in ("W_enc", "b_enc", "W_dec", "b_dec"))
    seen: dict[str, torch.Tensor] = {}

    def formula(x: torch.Tensor) -> torch.Tensor:
        pre = (x - b_dec) @ W_enc + b_enc
        acts = torch.relu(pre)
        acts.retain_grad()
        clean_recons = acts @ W_dec + b_dec
        used = acts + STRENGTH * torch.nn.functional.one_hot(torch.tensor(FEATURE), D_SAE) if steered else acts
        recons = used @ W_dec + b_dec
        error = x.detach() - clean_recons.detach()
        output = recons + error if use_error_term else recons
        seen.update(hook_sae_input=x, hook_sae_acts_pre=pre, hook_sae_acts_post=acts, hook_sae_recons=recons,
                    hook_sae_error=error, hook_sae_output=output)
        return output

    def hand_written(module: nn.Module, inputs: Any, output: Any) -> Any:
        return formula(output) if isinstance(output, torch.Tensor) else (formula(output[0]), *output[1:])

    handle = model.get_submodule(module_name).register_forward_hook(hand_written)
    try:
        logits = logits_of(model)
        logits[0, -1, 0].backward()
    finally:
        handle.remove()
    model.zero_grad(set_to_none=True)
    gradient = seen["hook_sae_acts_post"].grad
    assert gradient is not None
    return logits.detach(), {name: value.detach() for name, value in seen.items()} | {"acts_grad": gradient}


@pytest.mark.parametrize("use_error_term", [False, True], ids=["reconstruction", "error-term"])
@pytest.mark.parametrize("module_name", [BLOCK, ATTENTION, MLP], ids=["block", "attention-tuple", "mlp"])
def test_spliced_logits_cache_and_feature_gradients_match_the_hand_written_splice(
    model: nn.Module, module_name: str, use_error_term: bool
) -> None:
    sae = make_sae()
    expected_logits, expected = reference(model, module_name, sae, use_error_term)
    cache: dict[str, torch.Tensor] = {}
    with splice(model, {module_name: sae}, use_error_term=use_error_term, cache=cache, incl_bwd=True):
        logits = logits_of(model)
        logits[0, -1, 0].backward()
    model.zero_grad(set_to_none=True)

    torch.testing.assert_close(logits.detach(), expected_logits, rtol=1e-10, atol=1e-10)
    points = SAE_POINTS + (("hook_sae_error",) if use_error_term else ())
    assert sorted(key for key in cache if not key.endswith("_grad")) == sorted(f"{module_name}.{p}" for p in points)
    for point in points:
        torch.testing.assert_close(cache[f"{module_name}.{point}"], expected[point], rtol=1e-10, atol=1e-10,
                                   msg=point)
    torch.testing.assert_close(cache[f"{module_name}.hook_sae_acts_post_grad"], expected["acts_grad"],
                               rtol=1e-10, atol=1e-10)
    assert expected["acts_grad"].abs().sum() > 0


def test_the_error_term_keeps_the_logits_exact_while_the_features_differ_from_zero(model: nn.Module) -> None:
    sae = make_sae()
    clean = logits_of(model).detach()
    cache: dict[str, torch.Tensor] = {}
    with splice(model, {BLOCK: sae}, use_error_term=True, cache=cache):
        spliced = logits_of(model).detach()
    torch.testing.assert_close(spliced, clean, rtol=1e-12, atol=1e-12)
    assert cache[f"{BLOCK}.hook_sae_acts_post"].abs().sum() > 0
    with splice(model, {BLOCK: sae}):
        assert not torch.allclose(logits_of(model), clean)


def test_use_error_term_none_keeps_the_sae_setting_and_the_setting_is_restored(model: nn.Module) -> None:
    sae = make_sae()
    sae.use_error_term = True
    clean = logits_of(model).detach()
    with splice(model, {BLOCK: sae}):
        torch.testing.assert_close(logits_of(model).detach(), clean, rtol=1e-12, atol=1e-12)
    with splice(model, {BLOCK: sae}, use_error_term=False):
        assert not torch.allclose(logits_of(model), clean)
    assert sae.use_error_term is True


def test_a_hook_on_the_sae_steers_the_spliced_model(model: nn.Module) -> None:
    sae = make_sae()
    expected_logits, _ = reference(model, BLOCK, sae, use_error_term=False, steered=True)

    def steer(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        return acts + STRENGTH * torch.nn.functional.one_hot(torch.tensor(FEATURE), D_SAE)

    with splice(model, {BLOCK: sae}), sae.hooks(fwd_hooks=[("hook_sae_acts_post", steer)]):
        steered = logits_of(model).detach()
    torch.testing.assert_close(steered, expected_logits, rtol=1e-10, atol=1e-10)


def test_names_filter_keeps_only_what_it_asks_for_across_several_saes(model: nn.Module) -> None:
    wanted = [f"{BLOCK}.hook_sae_acts_post", f"{ATTENTION}.hook_sae_recons"]
    cache: dict[str, torch.Tensor] = {}
    with splice(model, {BLOCK: make_sae(), ATTENTION: make_sae()}, cache=cache, names_filter=wanted):
        logits_of(model)
    assert sorted(cache) == sorted(wanted)
    predicate_cache: dict[str, torch.Tensor] = {}
    with splice(model, {MLP: make_sae()}, cache=predicate_cache, names_filter=lambda n: n.endswith("acts_pre")):
        logits_of(model)
    assert list(predicate_cache) == [f"{MLP}.hook_sae_acts_pre"]


def test_every_hook_is_removed_on_exit_and_on_an_exception(model: nn.Module) -> None:
    clean = logits_of(model).detach()
    sae = make_sae()
    with splice(model, {BLOCK: sae, MLP: sae}, cache={}):
        assert model.get_submodule(BLOCK)._forward_hooks and model.get_submodule(MLP)._forward_hooks
    with pytest.raises(RuntimeError, match="inside the block"), splice(model, {BLOCK: sae}):
        raise RuntimeError("inside the block")
    with pytest.raises(ValueError, match="has d_in=24"), splice(model, {BLOCK: make_sae(), MLP: make_sae(d_in=24)}):
        logits_of(model)
    assert not any(module._forward_hooks for module in model.modules())
    assert not any(point.fwd_hooks or point.bwd_hooks for point in sae.hook_points())
    torch.testing.assert_close(logits_of(model).detach(), clean, rtol=0, atol=0)
    with splice(model, {BLOCK: sae}):  # the module is free again
        pass


def test_an_unknown_module_name_suggests_close_matches(model: nn.Module) -> None:
    with pytest.raises(UnknownNameError, match=r"GPT2LMHeadModel has no module named 'transformer.h.1.mpl' to splice "
                                               r"StandardSAE\(d_in=32, d_sae=48\) at; close matches: "
                                               r"transformer.h.1.mlp"), \
            splice(model, {"transformer.h.1.mpl": make_sae()}):
        pass
    with pytest.raises(UnknownNameError, match=r"no module named 'decoder'.*; model.named_modules"), \
            splice(model, {"decoder": make_sae()}):
        pass


def test_a_sae_whose_width_differs_from_the_activation_names_both(model: nn.Module) -> None:
    with pytest.raises(ValueError, match=rf"{BLOCK} outputs width 32 but the SAE spliced there "
                                         r"\(StandardSAE\(d_in=24, d_sae=48\)\) has d_in=24"), \
            splice(model, {BLOCK: make_sae(d_in=24)}):
        logits_of(model)


def test_a_sae_in_another_dtype_than_the_activations_says_how_to_move_it(model: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"StandardSAE\(d_in=32, d_sae=48\) is on cpu/torch.float32 but "
                                         rf"{BLOCK} outputs cpu/torch.float64 activations; move it first: "
                                         r"sae.to\('cpu', torch.float64\)"), \
            splice(model, {BLOCK: make_sae(dtype="float32")}):
        logits_of(model)


def test_a_module_spliced_by_an_enclosing_splice_names_both_saes(model: nn.Module) -> None:
    outer, inner = make_sae(), make_sae(d_in=D_MODEL, d_sae=8)
    with splice(model, {BLOCK: outer}):
        with pytest.raises(ValueError, match=rf"{BLOCK} already holds StandardSAE\(d_in=32, d_sae=48\) from an "
                                             rf"enclosing splice \(as {BLOCK}\); end that block before splicing "
                                             r"StandardSAE\(d_in=32, d_sae=8\) there"), \
                splice(model, {MLP: make_sae(), BLOCK: inner}):
            pass
        assert not model.get_submodule(MLP)._forward_hooks
        assert len(model.get_submodule(BLOCK)._forward_hooks) == 1


def test_what_cannot_be_spliced_is_named(model: nn.Module) -> None:
    with pytest.raises(TypeError, match=f"splice takes {{module name: SAE}}; '{BLOCK}' maps to a Tensor"), \
            splice(model, {BLOCK: torch.zeros(3)}):  # type: ignore[dict-item]
        pass
    hook_z = make_sae(reshape_activations="hook_z")
    with pytest.raises(ValueError, match=r"has reshape_activations='hook_z'.*splice at 'transformer.h.0.attn' needs"), \
            splice(model, {ATTENTION: hook_z}):
        pass
    with pytest.raises(TypeError, match=r"transformer returns a BaseModelOutputWithPastAndCrossAttentions; splice "
                                        "replaces a module output that is a tensor or a tuple"), \
            splice(model, {"transformer": make_sae()}):
        logits_of(model)
    with pytest.raises(ValueError, match=r"names_filter and incl_bwd choose what splice caches; pass cache=\{\}"), \
            splice(model, {BLOCK: make_sae()}, names_filter=["x"]):
        pass


def test_splice_is_exported_from_the_plugin_and_saecore() -> None:
    import saecore_source_llm

    import saecore

    assert saecore_source_llm.splice is splice
    assert saecore.splice is splice


@pytest.mark.parametrize(("module_name", "width"), [
    (BLOCK, D_MODEL), (ATTENTION, D_MODEL), (MLP, D_MODEL), ("transformer.h.0.mlp.c_fc", 4 * D_MODEL),
    ("transformer.h.0.ln_1", D_MODEL), ("transformer.wte", D_MODEL),
])
def test_a_width_the_model_tells_is_checked_when_the_splice_starts(model: nn.Module, module_name: str,
                                                                    width: int) -> None:
    wrong = make_sae(d_in=width + 1)
    with pytest.raises(ValueError, match=rf"^{module_name} outputs width {width} but the SAE spliced there "
                                         rf"\(StandardSAE\(d_in={width + 1}, d_sae=48\)\) has d_in={width + 1}$"), \
            splice(model, {module_name: wrong}):
        pytest.fail("the splice started")
    assert all(not module._forward_hooks for module in model.modules())
