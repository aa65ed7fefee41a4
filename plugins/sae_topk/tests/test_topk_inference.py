"""Inference TopKSAE against the float64 reference: encode, decode, forward, hooks, folding, files."""

from __future__ import annotations

import pytest
import topk_reference as ref
import torch
from topk_helpers import inference_sae
from topk_reference import RefOptions

from saecore import SAE, ConfigError

D_IN, D_SAE, K = 16, 48, 5
NORMALIZE_MODES = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"]


def _inputs(*lead: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, D_IN, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("normalize", NORMALIZE_MODES)
def test_encode_decode_forward_match_reference(rescale: bool, apply_b_dec: bool, normalize: str) -> None:
    p = ref.random_params(D_IN, D_SAE, seed=0)
    o = RefOptions(k=K, rescale=rescale, apply_b_dec_to_input=apply_b_dec, normalize=normalize)
    sae = inference_sae(p, o)
    x = _inputs(12)
    with torch.no_grad():
        feature_acts = sae.encode(x)
        decoded = sae.decode(feature_acts)
        out = sae(x)
    expected_f = ref.encode(x, p, o)
    torch.testing.assert_close(feature_acts, expected_f, rtol=1e-12, atol=1e-12)
    assert ((feature_acts != 0).sum(-1) <= K).all()
    torch.testing.assert_close(out, ref.forward(x, p, o), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(decoded, out, rtol=1e-10, atol=1e-10)


def test_rescaling_changes_which_latents_are_kept() -> None:
    """Guards the tests above: with these parameters the two rankings really differ."""
    p = ref.random_params(D_IN, D_SAE, seed=0)
    x = _inputs(12)
    plain = ref.encode(x, p, RefOptions(k=K)) != 0
    rescaled = ref.encode(x, p, RefOptions(k=K, rescale=True)) != 0
    assert not torch.equal(plain, rescaled)


@pytest.mark.parametrize("rescale", [False, True])
def test_three_dimensional_inputs(rescale: bool) -> None:
    p = ref.random_params(D_IN, D_SAE, seed=2)
    o = RefOptions(k=K, rescale=rescale)
    sae = inference_sae(p, o)
    x = _inputs(3, 4)
    with torch.no_grad():
        feature_acts = sae.encode(x)
        out = sae(x)
    assert feature_acts.shape == (3, 4, D_SAE)
    assert out.shape == (3, 4, D_IN)
    torch.testing.assert_close(feature_acts, ref.encode(x, p, o), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, ref.forward(x, p, o), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sae.decode(feature_acts), out, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rescale", [False, True])
def test_decode_of_dense_activations_and_its_gradient(rescale: bool) -> None:
    """A dense tensor (here fully dense) decodes exactly, with the gradient at every entry."""
    p = ref.random_params(D_IN, D_SAE, seed=3)
    o = RefOptions(k=K, rescale=rescale)
    sae = inference_sae(p, o)
    gen = torch.Generator().manual_seed(4)
    f = torch.randn(2, 3, D_SAE, generator=gen, dtype=torch.float64)
    f_ours = f.clone().requires_grad_(True)
    f_ref = f.clone().requires_grad_(True)
    out = sae.decode(f_ours)
    expected = ref.decode(f_ref, p, o)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    weights = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert f_ours.grad is not None and f_ref.grad is not None
    torch.testing.assert_close(f_ours.grad, f_ref.grad, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(sae.decode(f), expected.detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rescale", [False, True])
def test_decode_of_sparse_coo_activations(rescale: bool) -> None:
    p = ref.random_params(D_IN, D_SAE, seed=5)
    o = RefOptions(k=K, rescale=rescale)
    sae = inference_sae(p, o)
    f = ref.encode(_inputs(3, 4), p, o)
    with torch.no_grad():
        torch.testing.assert_close(sae.decode(f.to_sparse()), ref.decode(f, p, o), rtol=1e-10, atol=1e-10)


def test_gradient_of_forward_with_respect_to_input_and_parameters() -> None:
    """The sparse forward is still a differentiable function of x and of every parameter."""
    p = ref.random_params(D_IN, D_SAE, seed=6)
    o = RefOptions(k=K, rescale=True)
    sae = inference_sae(p, o)
    x = _inputs(7)
    x_ours = x.clone().requires_grad_(True)
    sae(x_ours).pow(2).sum().backward()
    ref_params = ref.RefParams(*(t.clone().requires_grad_(True) for t in (p.W_enc, p.b_enc, p.W_dec, p.b_dec)))
    x_ref = x.clone().requires_grad_(True)
    ref.forward(x_ref, ref_params, o).pow(2).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-9, atol=1e-9)
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(getattr(sae, name).grad, getattr(ref_params, name).grad, rtol=1e-9, atol=1e-9)


def test_error_term_makes_forward_the_identity() -> None:
    p = ref.random_params(D_IN, D_SAE, seed=7)
    sae = inference_sae(p, RefOptions(k=K))
    sae.use_error_term = True
    x = _inputs(6)
    with torch.no_grad():
        torch.testing.assert_close(sae(x), x, rtol=1e-12, atol=1e-12)


def test_hooks_see_dense_activations_and_can_replace_them() -> None:
    p = ref.random_params(D_IN, D_SAE, seed=8)
    o = RefOptions(k=K)
    sae = inference_sae(p, o)
    x = _inputs(5)
    with torch.no_grad():
        out, cache = sae.run_with_cache(x)
        ablated = sae.run_with_hooks(x, fwd_hooks=[("hook_sae_acts_post", lambda t, hook: torch.zeros_like(t))])
    assert set(cache) >= {"hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons"}
    torch.testing.assert_close(cache["hook_sae_acts_post"], ref.encode(x, p, o), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, ref.forward(x, p, o), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ablated, p.b_dec.expand(5, D_IN), rtol=0, atol=0)


def test_fold_W_dec_norm_is_refused_without_rescaling() -> None:
    sae = inference_sae(ref.random_params(D_IN, D_SAE, seed=9), RefOptions(k=K))
    with pytest.raises(NotImplementedError, match="rescale_acts_by_decoder_norm"):
        sae.fold_W_dec_norm()
    with pytest.raises(ConfigError, match="rescale_acts_by_decoder_norm"):
        sae.fold_W_dec_norm()


def test_fold_W_dec_norm_keeps_outputs_with_rescaling() -> None:
    p = ref.random_params(D_IN, D_SAE, seed=10)
    o = RefOptions(k=K, rescale=True)
    sae = inference_sae(p, o)
    x = _inputs(9)
    with torch.no_grad():
        before_f, before_out = sae.encode(x), sae(x)
        sae.fold_W_dec_norm()
        torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE, dtype=torch.float64))
        torch.testing.assert_close(sae.encode(x), before_f, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(sae(x), before_out, rtol=1e-10, atol=1e-10)


def test_save_and_load_round_trip(tmp_path) -> None:
    p = ref.random_params(D_IN, D_SAE, seed=11)
    o = RefOptions(k=K, rescale=True, apply_b_dec_to_input=False)
    sae = inference_sae(p, o)
    sae.save_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    assert type(loaded) is type(sae)
    assert loaded.cfg.k == K and loaded.cfg.rescale_acts_by_decoder_norm
    assert set(loaded.state_dict()) == {"W_enc", "b_enc", "W_dec", "b_dec"}
    x = _inputs(4)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), sae(x), rtol=0, atol=0)
