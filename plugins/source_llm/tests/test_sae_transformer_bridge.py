"""SAETransformerBridge on a tiny random TransformerLens 4 bridge, checked against a hand-written splice.

The bridge wraps a random GPT-2 saved to a local folder (d_model 16, 4 heads of 4, vocabulary 30:
the shapes of the HookedSAETransformer tests, whose float64 reference hook and SAEs are reused).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import torch
from test_hooked_sae_transformer import (
    D_SAE,
    D_VOCAB,
    HOOK_Z,
    N_HEADS,
    RESID,
    SAE_POINTS,
    make_sae,
    reference,
    steer,
    tokens,
)

from saecore import SAE
from saecore.errors import UnknownNameError

TL_MAJOR = int(version("transformer-lens").split(".")[0])
pytestmark = pytest.mark.skipif(TL_MAJOR < 4, reason="SAETransformerBridge is built for transformer-lens 4.x")


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("bridge-gpt2")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=16, n_head=N_HEADS, n_positions=12, vocab_size=D_VOCAB, bos_token_id=0,
                        eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture
def model(gpt2_dir: Path) -> Any:
    from saecore_source_llm.sae_transformer_bridge import SAETransformerBridge

    return SAETransformerBridge.boot_transformers(str(gpt2_dir), device="cpu", dtype=torch.float64)


@pytest.mark.parametrize("use_error_term", [False, True], ids=["reconstruction", "error-term"])
@pytest.mark.parametrize("steered", [False, True], ids=["plain", "steered"])
@pytest.mark.parametrize("hook_name", [RESID, HOOK_Z])
def test_spliced_outputs_cache_and_gradients_match_the_hand_written_splice(
    model: Any, hook_name: str, steered: bool, use_error_term: bool
) -> None:
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


def test_error_term_keeps_the_output_exact_and_the_features_differentiable(model: Any) -> None:
    sae = make_sae(RESID)
    clean = model(tokens())
    with model.saes(saes=[sae], use_error_term=True):
        spliced = model(tokens())
        _, cache = model.run_with_cache(tokens(), return_type="loss", incl_bwd=True,
                                        names_filter=f"{RESID}.hook_sae_acts_post")
    torch.testing.assert_close(spliced, clean, rtol=1e-12, atol=1e-12)
    assert sorted(cache.keys()) == [f"{RESID}.hook_sae_acts_post", f"{RESID}.hook_sae_acts_post_grad"]
    assert cache[f"{RESID}.hook_sae_acts_post_grad"].abs().sum() > 0


def test_run_with_cache_with_saes_keeps_only_what_the_filter_asks_for(model: Any) -> None:
    sae = make_sae(RESID)
    wanted = model.get_sae_hook_name(sae)
    assert wanted == f"{RESID}.hook_sae_acts_post"
    _, cache = model.run_with_cache_with_saes(tokens(), saes=[sae], names_filter=[wanted])
    assert list(cache.keys()) == [wanted]
    assert model.acts_to_saes == {} and wanted not in model.hook_dict


def test_saes_context_restores_the_sae_it_displaced_and_the_model_does_not_own_it(model: Any) -> None:
    names = set(model.state_dict())
    kept, temporary = make_sae(RESID), make_sae(RESID, d_sae=D_SAE * 2)
    model.add_sae(kept, use_error_term=True)
    assert set(model.state_dict()) == names
    clean = model(tokens())
    with model.saes(saes=temporary):
        assert model.acts_to_saes == {RESID: temporary}
        assert not torch.allclose(model(tokens()), clean)
    assert model.acts_to_saes == {RESID: kept}
    torch.testing.assert_close(model(tokens()), clean, rtol=0, atol=0)
    model.reset_saes()
    assert not model.hook_dict[RESID]._forward_hooks
    assert kept.hook_sae_acts_post.name == "hook_sae_acts_post"


def test_run_with_saes_and_run_with_hooks_with_saes_detach_afterwards(model: Any) -> None:
    sae = make_sae(RESID)
    plain = model.run_with_saes(tokens(), saes=[sae])
    hooked = model.run_with_hooks_with_saes(tokens(), saes=[sae], fwd_hooks=[(f"{RESID}.hook_sae_acts_post", steer)])
    torch.testing.assert_close(plain, reference(model, sae, steered=False, use_error_term=False)[0], rtol=1e-10,
                               atol=1e-10)
    torch.testing.assert_close(hooked.detach(), reference(model, sae, steered=True, use_error_term=False)[0],
                               rtol=1e-10, atol=1e-10)
    assert model.acts_to_saes == {} and not sae.hook_sae_acts_post.is_hooked


def test_bad_input_is_named_in_one_line(model: Any) -> None:
    wide = SAE.from_dict({"architecture": "standard", "d_in": 24, "d_sae": 8, "dtype": "float64",
                          "metadata": {"hook_name": RESID}})
    with pytest.raises(ValueError, match=rf"^{RESID} has width 16 but the SAE attached there "
                                         r"\(StandardSAE\(d_in=24, d_sae=8\)\) has d_in=24$"):
        model.add_sae(wide)
    with pytest.raises(UnknownNameError, match="^the model has no hook named 'blocks.1.hook_resid_pr' to attach "
                                               r"StandardSAE\(d_in=16, d_sae=32\) at; close matches: "
                                               "blocks.1.hook_resid_pre"):
        model.add_sae(make_sae("blocks.1.hook_resid_pr"))
    with pytest.raises(ValueError, match=r"^StandardSAE\(d_in=16, d_sae=32\) is on cpu/torch.float32 but the model "
                                         r"is on cpu/torch.float64; move it first: sae.to\(model.cfg.device, "
                                         r"model.cfg.dtype\)$"):
        model.add_sae(make_sae(RESID).to(torch.float32))
    first, second = make_sae(RESID), make_sae(RESID, d_sae=8)
    model.add_sae(first)
    with pytest.raises(ValueError, match=rf"^{RESID} already holds StandardSAE\(d_in=16, d_sae=32\); call "
                                         rf"reset_saes\('{RESID}'\) before adding StandardSAE\(d_in=16, d_sae=8\)$"):
        model.add_sae(second)
    with pytest.raises(UnknownNameError, match=f"^no SAE is attached at '{HOOK_Z}' to reset; attached at: {RESID}$"):
        model.reset_saes([HOOK_Z])
    assert model.acts_to_saes == {RESID: first}


def test_the_bridge_is_exported_and_wraps_only_bridges(model: Any) -> None:
    import saecore_source_llm
    from saecore_source_llm.sae_transformer_bridge import SAETransformerBridge

    import saecore

    assert saecore.SAETransformerBridge is saecore_source_llm.SAETransformerBridge is SAETransformerBridge
    assert SAETransformerBridge.from_bridge(model) is model
    with pytest.raises(TypeError, match="from_bridge takes a transformer_lens TransformerBridge, got a Linear"):
        SAETransformerBridge.from_bridge(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(("hook_name", "width", "reshape"), [
    ("blocks.0.mlp.hook_post", 64, "none"), ("blocks.0.hook_mlp_out", 16, "none"), (HOOK_Z, 16, "hook_z"),
    (HOOK_Z, 4, "none"), ("blocks.0.hook_in", 16, "none"),
])
def test_a_width_the_config_tells_is_checked_at_add_sae(model: Any, hook_name: str, width: int, reshape: str) -> None:
    wrong = SAE.from_dict({"architecture": "standard", "d_in": width + 1, "d_sae": 8, "dtype": "float64",
                           "reshape_activations": reshape, "metadata": {"hook_name": hook_name}})
    with pytest.raises(ValueError, match=rf"^{hook_name} has width {width} but the SAE attached there"):
        model.add_sae(wrong)
    assert model.acts_to_saes == {}
