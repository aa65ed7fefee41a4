"""Feature tools on a tiny random TransformerLens 3 model, checked against a hand-written splice in float64.

The reference runs the model without any SAE attached and a plain hook at the SAE's hook that
computes the ReLU SAE formula from the SAE's parameters, applies the edit by hand, and adds
back the reconstruction error where the tool keeps it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import pytest
import torch
from test_hooked_sae_transformer import D_SAE, HOOK_Z, RESID, make_model, make_sae, tokens

from saecore.errors import UnknownNameError
from saecore.sae import SAE

TL_MAJOR = int(version("transformer-lens").split(".")[0])
pytestmark = pytest.mark.skipif(TL_MAJOR >= 4, reason="HookedSAETransformer is built for transformer-lens 3.x")

FEATURE = 3
EditActs = Callable[[torch.Tensor], torch.Tensor]


def logit_difference(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, -1, 3] - logits[:, -1, 5]).mean()


def manual_acts(model: Any, sae: SAE[Any]) -> torch.Tensor:
    """The SAE's feature activations on ``tokens()``, computed by hand."""
    _, cache = model.run_with_cache(tokens(), names_filter=[sae.cfg.metadata.hook_name])
    x = cache[sae.cfg.metadata.hook_name]
    x = x.flatten(-2) if sae.reshape_hook_z else x
    return torch.relu((x - sae.b_dec.detach()) @ sae.W_enc.detach() + sae.b_enc.detach())


def manual_splice(
    sae: SAE[Any], edit_acts: EditActs, add: torch.Tensor | None, use_error_term: bool,
    acts_seen: list[torch.Tensor] | None = None,
) -> Callable[[torch.Tensor, Any], torch.Tensor]:
    """A plain hook: the SAE formula, the edit of its features, an added vector, and the error term."""
    w_enc, b_enc, w_dec, b_dec = (p.detach() for p in (sae.W_enc, sae.b_enc, sae.W_dec, sae.b_dec))

    def splice(activation: torch.Tensor, hook: Any) -> torch.Tensor:
        x = activation.flatten(-2) if sae.reshape_hook_z else activation
        clean = torch.relu((x - b_dec) @ w_enc + b_enc)
        acts = edit_acts(clean)
        if acts_seen is not None:
            acts_seen.append(acts)
        output = acts @ w_dec + b_dec
        if add is not None:
            output = output + add
        if use_error_term:
            output = output + (x - (clean @ w_dec + b_dec)).detach()
        return output.unflatten(-1, activation.shape[-2:]) if sae.reshape_hook_z else output

    return splice


def manual_logits(model: Any, sae: SAE[Any], edit_acts: EditActs = lambda acts: acts,
                  add: torch.Tensor | None = None, use_error_term: bool = True) -> torch.Tensor:
    hook = (sae.cfg.metadata.hook_name, manual_splice(sae, edit_acts, add, use_error_term))
    with torch.no_grad():
        logits: torch.Tensor = model.run_with_hooks(tokens(), fwd_hooks=[hook])
    return logits


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("use_error_term", [True, False], ids=["error-term", "reconstruction"])
@pytest.mark.parametrize("hook_name", [RESID, HOOK_Z])
def test_steering_adds_the_scaled_decoder_row_at_the_hook(hook_name: str, use_error_term: bool) -> None:
    from saecore_source_llm import steer_feature

    model, sae = make_model(), make_sae(hook_name)
    expected = manual_logits(model, sae, add=2.5 * 1.7 * sae.W_dec[FEATURE].detach(), use_error_term=use_error_term)
    model.add_sae(sae, use_error_term=False)
    unsteered = model(tokens())
    with steer_feature(model, FEATURE, 2.5, scale=1.7, use_error_term=use_error_term) as scale:
        close(model(tokens()), expected)
    assert scale == 1.7
    close(model(tokens()), unsteered)
    assert model.acts_to_saes == {hook_name: sae}


@pytest.mark.parametrize("statistic", ["max", "mean"])
def test_steering_scale_is_estimated_from_the_nonzero_activations_on_given_tokens(statistic: str) -> None:
    from saecore_source_llm import feature_activation_scale, steer_feature

    model, sae = make_model(), make_sae(RESID)
    feature_acts = manual_acts(model, sae)[..., FEATURE]
    fired = feature_acts[feature_acts > 0]
    assert 0 < fired.numel() < feature_acts.numel()
    expected_scale = float(fired.max() if statistic == "max" else fired.mean())
    expected = manual_logits(model, sae, add=2.0 * expected_scale * sae.W_dec[FEATURE].detach())
    model.add_sae(sae)
    assert feature_activation_scale(model, tokens(), FEATURE, statistic=statistic) == pytest.approx(expected_scale,
                                                                                                   rel=1e-12)
    with steer_feature(model, FEATURE, 2.0, RESID, scale_tokens=tokens(), scale_statistic=statistic) as scale:
        close(model(tokens()), expected)
    assert scale == pytest.approx(expected_scale, rel=1e-12)


@pytest.mark.parametrize("hook_name", [RESID, HOOK_Z])
def test_ablating_features_changes_only_those_features(hook_name: str) -> None:
    from saecore_source_llm import ablate_features

    model, sae = make_model(), make_sae(hook_name)

    def zero_1_and_5(acts: torch.Tensor) -> torch.Tensor:
        acts = acts.clone()
        acts[..., [1, 5]] = 0.0
        return acts

    expected = manual_logits(model, sae, zero_1_and_5)
    clean = model(tokens()).detach()
    model.add_sae(sae, use_error_term=True)
    with ablate_features(model, [1, 5]):
        ablated = model(tokens())
    close(ablated, expected)
    assert not torch.allclose(ablated, clean)
    close(model(tokens()), clean)


def test_clamping_sets_each_feature_to_its_value_and_keeps_the_error_term() -> None:
    from saecore_source_llm import clamp_features

    model, sae = make_model(), make_sae(RESID)

    def clamp(acts: torch.Tensor) -> torch.Tensor:
        acts = acts.clone()
        acts[..., FEATURE], acts[..., 7] = 4.0, -1.5
        return acts

    expected = manual_logits(model, sae, clamp)
    with model.saes(saes=[sae]), clamp_features(model, [FEATURE, 7], [4.0, -1.5], RESID):
        close(model(tokens()), expected)
    expected_one_value = manual_logits(model, sae, lambda acts: acts.index_fill(-1, torch.tensor([FEATURE]), 6.0),
                                       use_error_term=False)
    with model.saes(saes=[sae]), clamp_features(model, FEATURE, 6.0, use_error_term=False):
        close(model(tokens()), expected_one_value)


@pytest.mark.parametrize("hook_name", [RESID, HOOK_Z])
def test_top_k_features_match_topk_of_the_hand_computed_activations(hook_name: str) -> None:
    from saecore_source_llm import top_k_features

    model, sae = make_model(), make_sae(hook_name)
    acts = manual_acts(model, sae)
    expected = acts.topk(5, dim=-1)
    model.add_sae(sae)
    top = top_k_features(model, tokens(), 5)
    assert top.values.shape == top.indices.shape == (3, 6, 5)
    close(top.values, expected.values)
    close(acts.gather(-1, top.indices), expected.values)
    fired = expected.values > 0  # zero activations tie, so only the firing features have one right index
    assert fired.any() and torch.equal(top.indices[fired], expected.indices[fired])


@pytest.mark.parametrize("hook_name", [RESID, HOOK_Z])
def test_attribution_is_activation_times_the_hand_computed_gradient(hook_name: str) -> None:
    from saecore_source_llm import feature_attribution

    model, sae = make_model(), make_sae(hook_name)
    seen: list[torch.Tensor] = []

    def leaf(acts: torch.Tensor) -> torch.Tensor:
        return acts.detach().requires_grad_(True)

    logits = model.run_with_hooks(tokens(), fwd_hooks=[(hook_name, manual_splice(sae, leaf, None, True, seen))])
    (grad,) = torch.autograd.grad(logit_difference(logits), seen)
    expected = seen[0].detach() * grad
    assert expected.abs().sum() > 0

    model.add_sae(sae, use_error_term=False)
    reconstructed = model(tokens())
    attribution = feature_attribution(model, tokens(), logit_difference)
    assert attribution.shape == (3, 6, D_SAE)
    close(attribution, expected)
    close(feature_attribution(model, tokens(), logit_difference, hook_name, reduce="sum"), expected.sum(dim=(0, 1)))
    close(model(tokens()), reconstructed)


def test_attribution_sum_estimates_the_metric_drop_when_every_feature_is_zeroed() -> None:
    from saecore_source_llm import ablate_features, feature_attribution

    model, sae = make_model(), make_sae(RESID)
    with torch.no_grad():
        sae.W_dec.mul_(1e-6)  # the random residual stream is small: a tiny step keeps it first-order
    model.add_sae(sae)
    total = feature_attribution(model, tokens(), logit_difference, reduce="sum").sum()
    with torch.no_grad(), model.saes(saes=[sae], use_error_term=True):
        clean = logit_difference(model(tokens()))
        with ablate_features(model, range(D_SAE)):
            zeroed = logit_difference(model(tokens()))
    assert float(total) == pytest.approx(float(clean - zeroed), rel=1e-4)


def test_a_feature_out_of_range_names_d_sae() -> None:
    from saecore_source_llm import ablate_features, steer_feature

    model = make_model()
    model.add_sae(make_sae(RESID))
    message = rf"feature {D_SAE} is out of range for the SAE at {RESID} \(d_sae={D_SAE}; features are 0..{D_SAE - 1}\)"
    with pytest.raises(IndexError, match=message), steer_feature(model, D_SAE, 1.0):
        pass
    with pytest.raises(IndexError, match=r"feature -1 is out of range"), ablate_features(model, [0, -1]):
        pass


def test_a_hook_without_an_sae_names_the_attached_hooks() -> None:
    from saecore_source_llm import feature_attribution, top_k_features

    model = make_model()
    with pytest.raises(UnknownNameError, match=r"pass hook_name to say which SAE to use; SAEs attached at: none "
                                               r"\(attach one with model.add_sae\(sae\)"):
        top_k_features(model, tokens(), 3)
    model.add_sae(make_sae(RESID))
    model.add_sae(make_sae(HOOK_Z))
    with pytest.raises(UnknownNameError, match=f"pass hook_name to say which SAE to use; SAEs attached at: "
                                               f"{RESID}, {HOOK_Z}"):
        feature_attribution(model, tokens(), logit_difference)
    with pytest.raises(UnknownNameError, match=f"no SAE is attached at 'blocks.0.hook_resid_pre'; SAEs attached at: "
                                               f"{RESID}, {HOOK_Z}"):
        top_k_features(model, tokens(), 3, "blocks.0.hook_resid_pre")


def test_bad_arguments_are_named() -> None:
    from saecore_source_llm import (
        clamp_features,
        feature_activation_scale,
        feature_attribution,
        steer_feature,
        top_k_features,
    )

    model, sae = make_model(), make_sae(RESID)
    model.add_sae(sae)
    with pytest.raises(ValueError, match=f"k=0 must be between 1 and the SAE's d_sae={D_SAE}"):
        top_k_features(model, tokens(), 0)
    with pytest.raises(ValueError, match=r"the metric must return a scalar; it returned shape \(3, 30\)"):
        feature_attribution(model, tokens(), lambda logits: logits[:, -1])
    with pytest.raises(ValueError, match="clamp_features got 1 values for 2 features"), clamp_features(
        model, [1, 2], [1.0]
    ):
        pass
    with pytest.raises(ValueError, match="either scale= or scale_tokens="), steer_feature(
        model, 1, 1.0, scale=1.0, scale_tokens=tokens()
    ):
        pass
    with pytest.raises(ValueError, match="statistic='median' is not one of 'mean', 'max'"):
        feature_activation_scale(model, tokens(), 1, statistic="median")  # type: ignore[arg-type]
    dead = int((manual_acts(make_model(), sae) == 0).all(dim=(0, 1)).nonzero()[0])
    with pytest.raises(ValueError, match=f"feature {dead} of the SAE at {RESID} is zero on all 18 given tokens; "
                                         "pass scale= explicitly"):
        feature_activation_scale(model, tokens(), dead)
