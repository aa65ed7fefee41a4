"""Transcoders spliced into TransformerLens 3, TransformerLens 4 and Hugging Face models.

The reference is the plain model with two hand-written hooks: one keeps the activation at the
MLP's input, the other replaces the MLP's output with the skip transcoder formula computed in
float64 from the parameters (plus, with the error term, the MLP's own output minus that formula
without any feature edit and without gradient). Outputs, the ``<output hook>.hook_sae_*`` cache entries and
the gradients must agree with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import torch
from test_hooked_sae_transformer import D_MODEL, D_VOCAB, FEATURE, N_HEADS, STRENGTH, make_model, tokens

from saecore import SAE
from saecore.errors import UnknownNameError

TL_MAJOR = int(version("transformer-lens").split(".")[0])
needs_tl3 = pytest.mark.skipif(TL_MAJOR >= 4, reason="HookedSAETransformer is built for transformer-lens 3.x")
needs_tl4 = pytest.mark.skipif(TL_MAJOR < 4, reason="SAETransformerBridge is built for transformer-lens 4.x")

D_SAE = 24
TL_IN, TL_OUT = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
HF_IN, HF_OUT = "transformer.h.1.ln_2", "transformer.h.1.mlp"
POINTS = ("hook_sae_input", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_output")


def make_transcoder(architecture: str = "skip_transcoder", hook_name: str = TL_IN, hook_name_out: str = TL_OUT,
                    d_out: int = D_MODEL) -> SAE[Any]:
    transcoder = SAE.from_dict({"architecture": architecture, "d_in": D_MODEL, "d_sae": D_SAE, "d_out": d_out,
                                "dtype": "float64",
                                "metadata": {"hook_name": hook_name, "hook_name_out": hook_name_out}})
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for parameter in transcoder.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * 0.3)
    return transcoder


def formula(tc: SAE[Any], x: torch.Tensor, steered: bool) -> dict[str, torch.Tensor]:
    """The skip transcoder's points for input ``x``, in float64 from its parameters."""
    acts = torch.relu(x @ tc.W_enc + tc.b_enc)
    if steered:
        acts = acts.clone()
        acts[..., FEATURE] += STRENGTH
    recons = acts @ tc.W_dec + tc.b_dec
    return {"hook_sae_input": x, "hook_sae_acts_post": acts, "hook_sae_recons": recons,
            "hook_sae_output": recons + x @ tc.W_skip.T}


def expected_points(tc: SAE[Any], x: torch.Tensor, y: torch.Tensor, steered: bool,
                    use_error_term: bool) -> dict[str, torch.Tensor]:
    points = formula(tc, x, steered)
    if use_error_term:
        points["hook_sae_error"] = y - formula(tc, x, steered=False)["hook_sae_output"].detach()
        points["hook_sae_output"] = points["hook_sae_output"] + points["hook_sae_error"]
    return points


def steer(acts: torch.Tensor, hook: Any = None) -> torch.Tensor:
    acts = acts.clone()
    acts[..., FEATURE] += STRENGTH
    return acts


def check(logits: torch.Tensor, expected_logits: torch.Tensor, cache: dict[str, torch.Tensor], out_place: str,
          points: dict[str, torch.Tensor]) -> None:
    torch.testing.assert_close(logits, expected_logits, rtol=1e-10, atol=1e-10)
    for name, value in points.items():
        torch.testing.assert_close(cache[f"{out_place}.{name}"], value, rtol=1e-10, atol=1e-10, msg=name)


def transformer_lens_reference(model: Any, tc: SAE[Any], steered: bool,
                               use_error_term: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """Logits, the transcoder's points and the gradient of W_enc from hand-written TransformerLens hooks."""
    seen: dict[str, torch.Tensor] = {}

    def keep(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        seen["x"] = acts
        return acts

    def replace(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        seen.update(expected_points(tc, seen["x"], acts, steered, use_error_term))
        return seen["hook_sae_output"]

    logits = model.run_with_hooks(tokens(), fwd_hooks=[(TL_IN, keep), (TL_OUT, replace)])
    (gradient,) = torch.autograd.grad(logits.sum(), tc.W_enc)
    return logits.detach(), {name: seen[name].detach() for name in expected_points_names(use_error_term)}, gradient


def expected_points_names(use_error_term: bool) -> tuple[str, ...]:
    return POINTS + (("hook_sae_error",) if use_error_term else ())


def run_spliced_transformer_lens(model: Any, tc: SAE[Any], steered: bool,
                                 use_error_term: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    model.add_sae(tc, use_error_term=use_error_term)
    assert model.acts_to_saes == {TL_IN: tc}
    with model.hooks(fwd_hooks=[(f"{TL_OUT}.hook_sae_acts_post", steer)] if steered else []):
        logits, cache = model.run_with_cache(tokens(), names_filter=lambda name: name.startswith(f"{TL_OUT}.hook_sae"))
    (gradient,) = torch.autograd.grad(logits.sum(), tc.W_enc)
    model.reset_saes()
    return logits.detach(), dict(cache.items()), gradient


CASES = pytest.mark.parametrize(("steered", "use_error_term"), [(False, False), (False, True), (True, True)],
                                ids=["prediction", "error-term", "steered-error-term"])


@needs_tl3
@CASES
def test_hooked_sae_transformer_runs_a_transcoder_as_the_hand_written_hooks(steered: bool,
                                                                           use_error_term: bool) -> None:
    model = make_model()
    tc = make_transcoder()
    expected_logits, expected, expected_gradient = transformer_lens_reference(model, tc, steered, use_error_term)
    logits, cache, gradient = run_spliced_transformer_lens(model, tc, steered, use_error_term)
    check(logits, expected_logits, cache, TL_OUT, expected)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model(tokens()), make_model()(tokens()))


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("transcoder-gpt2")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=D_MODEL, n_head=N_HEADS, n_positions=12, vocab_size=D_VOCAB,
                        bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@needs_tl4
@CASES
def test_sae_transformer_bridge_runs_a_transcoder_as_the_hand_written_hooks(gpt2_dir: Path, steered: bool,
                                                                            use_error_term: bool) -> None:
    from saecore_source_llm.sae_transformer_bridge import SAETransformerBridge

    model = SAETransformerBridge.boot_transformers(str(gpt2_dir), device="cpu", dtype=torch.float64)
    tc = make_transcoder()
    expected_logits, expected, expected_gradient = transformer_lens_reference(model, tc, steered, use_error_term)
    logits, cache, gradient = run_spliced_transformer_lens(model, tc, steered, use_error_term)
    check(logits, expected_logits, cache, TL_OUT, expected)
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-10, atol=1e-10)
    assert model.get_sae_hook_name(tc) == f"{TL_OUT}.hook_sae_acts_post"
    assert not any(".hook_sae_" in name for name in model.hook_dict)


@pytest.fixture
def hf_gpt2(gpt2_dir: Path) -> Any:
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(gpt2_dir, torch_dtype=torch.float64).eval()


@contextmanager
def hand_written_hf_splice(model: Any, tc: SAE[Any], steered: bool, use_error_term: bool,
                           seen: dict[str, torch.Tensor]) -> Iterator[None]:
    def keep(module: Any, inputs: Any, output: torch.Tensor) -> None:
        seen["x"] = output

    def replace(module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        seen.update(expected_points(tc, seen["x"], output, steered, use_error_term))
        return seen["hook_sae_output"]

    handles = [model.get_submodule(HF_IN).register_forward_hook(keep),
               model.get_submodule(HF_OUT).register_forward_hook(replace)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@CASES
def test_splice_runs_a_transcoder_between_two_modules_as_the_hand_written_hooks(hf_gpt2: Any, steered: bool,
                                                                               use_error_term: bool) -> None:
    from saecore_source_llm.hf_splice import splice

    tc = make_transcoder(hook_name=HF_IN, hook_name_out=HF_OUT)
    seen: dict[str, torch.Tensor] = {}
    with hand_written_hf_splice(hf_gpt2, tc, steered, use_error_term, seen):
        expected_logits = hf_gpt2(tokens()).logits
    (expected_gradient,) = torch.autograd.grad(expected_logits.sum(), tc.W_enc)
    cache: dict[str, torch.Tensor] = {}
    edit: list[tuple[str, Callable[..., Any]]] = [("hook_sae_acts_post", steer)] if steered else []
    with splice(hf_gpt2, {(HF_IN, HF_OUT): tc}, use_error_term=use_error_term, cache=cache), tc.hooks(fwd_hooks=edit):
        logits = hf_gpt2(tokens()).logits
    (gradient,) = torch.autograd.grad(logits.sum(), tc.W_enc)
    check(logits.detach(), expected_logits.detach(), cache, HF_OUT,
          {name: seen[name].detach() for name in expected_points_names(use_error_term)})
    torch.testing.assert_close(gradient, expected_gradient, rtol=1e-10, atol=1e-10)


@needs_tl3
def test_attaching_a_transcoder_that_does_not_fit_names_the_hook_and_field() -> None:
    model = make_model()
    with pytest.raises(ValueError, match=r"blocks\.1\.hook_mlp_out has width 16 .* has d_out=12"):
        model.add_sae(make_transcoder(d_out=12))
    with pytest.raises(UnknownNameError, match=r"no hook named 'blocks\.1\.hook_mlp_outt'"):
        model.add_sae(make_transcoder(hook_name_out="blocks.1.hook_mlp_outt"))
    with pytest.raises(ValueError, match=r"no cfg\.metadata\.hook_name_out"):
        model.add_sae(make_transcoder(hook_name_out=""))
    model.add_sae(make_transcoder())
    with pytest.raises(ValueError, match=r"blocks\.1\.hook_mlp_out already holds .*\(attached at blocks\.1\.ln2"):
        model.add_sae(make_transcoder(hook_name="blocks.1.hook_resid_mid"))
    assert list(model.acts_to_saes) == [TL_IN]


@needs_tl3
def test_a_transcoder_whose_output_hook_runs_first_or_holds_other_positions_is_refused() -> None:
    model = make_model()
    model.add_sae(make_transcoder(hook_name="blocks.1.hook_resid_post", hook_name_out="blocks.1.hook_resid_mid"))
    with pytest.raises(ValueError, match=r"its input place blocks\.1\.hook_resid_post did not run before"):
        model(tokens())
    model.reset_saes()
    model.add_sae(make_transcoder(hook_name="blocks.0.hook_resid_post", hook_name_out="blocks.1.hook_mlp_out"))

    def last_position(acts: torch.Tensor, hook: Any) -> torch.Tensor:
        return acts[:, -1:]

    with pytest.raises(ValueError, match=r"reads \[3, 6, 16\] at blocks\.0\.hook_resid_post but "
                                         r"blocks\.1\.hook_mlp_out carries \[3, 1, 16\]"):
        model.run_with_hooks(tokens(), fwd_hooks=[("blocks.0.hook_resid_post", last_position)])


def test_splice_takes_a_transcoder_by_a_pair_of_module_names(hf_gpt2: Any) -> None:
    from saecore_source_llm.hf_splice import splice

    tc = make_transcoder(hook_name=HF_IN, hook_name_out=HF_OUT)
    with pytest.raises(TypeError, match=r"is a transcoder: splice takes it as \{\(input module, output module\)"):
        with splice(hf_gpt2, {HF_OUT: tc}):
            pass
    with pytest.raises(UnknownNameError, match=r"no module named 'transformer\.h\.1\.ln_3' for .* to read"):
        with splice(hf_gpt2, {("transformer.h.1.ln_3", HF_OUT): tc}):
            pass
    with pytest.raises(ValueError, match=r"transformer\.h\.1\.mlp outputs width 16 .* has d_out=12"):
        with splice(hf_gpt2, {(HF_IN, HF_OUT): make_transcoder(d_out=12)}):
            pass


def test_feature_tools_read_and_steer_a_spliced_transcoder(hf_gpt2: Any) -> None:
    from saecore_source_llm.feature_tools import feature_activations, steer_feature
    from saecore_source_llm.hf_splice import splice

    tc = make_transcoder(hook_name=HF_IN, hook_name_out=HF_OUT)
    seen: dict[str, torch.Tensor] = {}
    with hand_written_hf_splice(hf_gpt2, tc, steered=False, use_error_term=True, seen=seen), torch.no_grad():
        hf_gpt2(tokens())
    step = STRENGTH * tc.W_dec[FEATURE].detach()

    def add_step(module: Any, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output + step

    handle = hf_gpt2.get_submodule(HF_OUT).register_forward_hook(add_step)
    with torch.no_grad():
        expected_logits = hf_gpt2(tokens()).logits
    handle.remove()
    with splice(hf_gpt2, {(HF_IN, HF_OUT): tc}), torch.no_grad():
        torch.testing.assert_close(feature_activations(hf_gpt2, tokens()), seen["hook_sae_acts_post"],
                                   rtol=1e-10, atol=1e-10)
        with steer_feature(hf_gpt2, FEATURE, STRENGTH, use_error_term=True):
            logits = hf_gpt2(tokens()).logits
    torch.testing.assert_close(logits, expected_logits, rtol=1e-10, atol=1e-10)
