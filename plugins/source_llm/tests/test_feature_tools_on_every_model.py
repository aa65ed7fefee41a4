"""The feature tools give the same answers, checked by hand in float64, on every kind of model that holds an SAE.

The kinds: HookedSAETransformer (TransformerLens 3), SAETransformerBridge (TransformerLens 4) and
a Hugging Face GPT-2 inside ``splice``. Each kind says how to put the SAE in and how to run the
model with a plain hook on the SAE's place, which the references use to apply the SAE formula
(ReLU SAE, float64) and the edit by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import torch
from test_hooked_sae_transformer import D_SAE, D_VOCAB, N_HEADS, RESID, make_sae, tokens

from saecore.sae import SAE

TL_MAJOR = int(version("transformer-lens").split(".")[0])
FEATURE, STRENGTH = 3, 2.5
Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ModelKind:
    model: Any
    sae: SAE[Any]
    holding: Callable[[], AbstractContextManager[Any]]
    """A block with the SAE in the model."""
    run_with_hook: Callable[[Edit], torch.Tensor]
    """The model's logits, without the SAE, with ``edit`` applied to the activation at the SAE's place."""


def transformer_lens_kind(model: Any) -> ModelKind:
    sae = make_sae(RESID)

    def run_with_hook(edit: Edit) -> torch.Tensor:
        logits: torch.Tensor = model.run_with_hooks(tokens(), fwd_hooks=[(RESID, lambda x, hook: edit(x))])
        return logits

    return ModelKind(model, sae, lambda: model.saes(saes=[sae]), run_with_hook)


def hugging_face_kind(folder: Path) -> ModelKind:
    from saecore_source_llm.hf_splice import splice
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float64).eval()
    sae = make_sae(RESID)
    module = model.get_submodule("transformer.h.0")

    def run_with_hook(edit: Edit) -> torch.Tensor:
        def hook(module: torch.nn.Module, inputs: Any, output: Any) -> Any:
            return edit(output) if isinstance(output, torch.Tensor) else (edit(output[0]), *output[1:])

        handle = module.register_forward_hook(hook)
        try:
            logits: torch.Tensor = model(tokens()).logits
        finally:
            handle.remove()
        return logits

    return ModelKind(model, sae, lambda: splice(model, {"transformer.h.0": sae}), run_with_hook)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tools-gpt2")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=16, n_head=N_HEADS, n_positions=12, vocab_size=D_VOCAB, bos_token_id=0,
                        eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(params=["HookedSAETransformer", "SAETransformerBridge", "splice"])
def kind(request: pytest.FixtureRequest, gpt2_dir: Path) -> Iterator[ModelKind]:
    if request.param == "HookedSAETransformer":
        if TL_MAJOR >= 4:
            pytest.skip("HookedSAETransformer is built for transformer-lens 3.x")
        from test_hooked_sae_transformer import make_model

        yield transformer_lens_kind(make_model())
    elif request.param == "SAETransformerBridge":
        if TL_MAJOR < 4:
            pytest.skip("SAETransformerBridge is built for transformer-lens 4.x")
        from saecore_source_llm.sae_transformer_bridge import SAETransformerBridge

        yield transformer_lens_kind(SAETransformerBridge.boot_transformers(str(gpt2_dir), device="cpu",
                                                                           dtype=torch.float64))
    else:
        yield hugging_face_kind(gpt2_dir)


def logits_of(kind: ModelKind) -> torch.Tensor:
    output = kind.model(tokens())
    logits: torch.Tensor = output.logits if hasattr(output, "logits") else output
    return logits


def features_of(sae: SAE[Any], x: torch.Tensor) -> torch.Tensor:
    return torch.relu((x - sae.b_dec.detach()) @ sae.W_enc.detach() + sae.b_enc.detach())


def hand_acts(kind: ModelKind) -> torch.Tensor:
    seen: list[torch.Tensor] = []
    kind.run_with_hook(lambda x: seen.append(features_of(kind.sae, x)) or x)
    return seen[0]


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


def test_top_k_features_and_activations_match_the_formula(kind: ModelKind) -> None:
    from saecore_source_llm import feature_activations, top_k_features

    expected = hand_acts(kind)
    with kind.holding():
        close(feature_activations(kind.model, tokens()), expected)
        top = top_k_features(kind.model, tokens(), 4)
    close(top.values, expected.topk(4, dim=-1).values)


def test_steering_adds_the_scaled_decoder_row(kind: ModelKind) -> None:
    from saecore_source_llm import steer_feature

    step = STRENGTH * 1.5 * kind.sae.W_dec[FEATURE].detach()
    with torch.no_grad():
        expected = kind.run_with_hook(lambda x: x + step)
        with kind.holding(), steer_feature(kind.model, FEATURE, STRENGTH, scale=1.5):
            steered = logits_of(kind)
    close(steered, expected)


def test_clamping_and_ablating_change_only_those_features(kind: ModelKind) -> None:
    from saecore_source_llm import ablate_features, clamp_features

    w_dec = kind.sae.W_dec.detach()

    def set_feature(value: float) -> Edit:
        def edit(x: torch.Tensor) -> torch.Tensor:
            return x + (value - features_of(kind.sae, x)[..., FEATURE:FEATURE + 1]) * w_dec[FEATURE]
        return edit

    with torch.no_grad():
        with kind.holding(), clamp_features(kind.model, FEATURE, 4.0):
            clamped = logits_of(kind)
        with kind.holding(), ablate_features(kind.model, [FEATURE]):
            ablated = logits_of(kind)
        close(clamped, kind.run_with_hook(set_feature(4.0)))
        close(ablated, kind.run_with_hook(set_feature(0.0)))


def test_attribution_is_activation_times_the_gradient(kind: ModelKind) -> None:
    from saecore_source_llm import feature_attribution

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, 3] - logits[:, -1, 5]).mean()

    leaves: list[torch.Tensor] = []

    def through_features(x: torch.Tensor) -> torch.Tensor:
        acts = features_of(kind.sae, x).requires_grad_(True)
        leaves.append(acts)
        return x + (acts - acts.detach()) @ kind.sae.W_dec.detach()

    (gradient,) = torch.autograd.grad(metric(kind.run_with_hook(through_features)), leaves)
    with kind.holding():
        attribution = feature_attribution(kind.model, tokens(), metric)
    close(attribution, leaves[0].detach() * gradient)
    assert attribution.shape == (*tokens().shape, D_SAE)


def test_a_pass_that_ends_before_the_sae_is_named(kind: ModelKind) -> None:
    from saecore_source_llm import feature_activations

    if not hasattr(kind.model, "run_with_hooks"):
        pytest.skip("stop_at_layer is TransformerLens's")
    with kind.holding(), pytest.raises(ValueError, match=f"^the forward pass never reached the SAE at {RESID}; "
                                                         "check forward_kwargs"):
        feature_activations(kind.model, tokens(), stop_at_layer=0)
