"""The TransformerLens hook API on saecore's hook points: directions, levels, permanence, caching."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from fixtures.saes import randomized_sae, relu_sae_reference

from saecore import HookPoint

D_IN, D_SAE, BATCH = 8, 16, 5


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


def reference_acts(sae: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.relu((x - sae.b_dec.detach()) @ sae.W_enc.detach() + sae.b_enc.detach())


def test_backward_hook_sees_and_replaces_the_gradient(x: torch.Tensor) -> None:
    sae = randomized_sae()
    seen: list[torch.Tensor] = []

    def record(grad: torch.Tensor, hook: HookPoint) -> None:
        seen.append(grad.clone())

    with sae.hooks(bwd_hooks=[("hook_sae_acts_post", record)]):
        sae(x).sum().backward()
    torch.testing.assert_close(seen[0], sae.W_dec.detach().sum(-1).expand(BATCH, D_SAE), rtol=0, atol=1e-12)

    sae.zero_grad()
    with sae.hooks(bwd_hooks=[("hook_sae_acts_post", lambda grad, hook: torch.zeros_like(grad))]):
        sae(x).sum().backward()
    assert torch.count_nonzero(sae.W_enc.grad) == 0
    assert not sae.hook_sae_acts_post.is_hooked


def test_run_with_cache_incl_bwd_caches_gradients(x: torch.Tensor) -> None:
    sae = randomized_sae()
    _, cache = sae.run_with_cache(x, names_filter="hook_sae_acts_post", incl_bwd=True)
    assert sorted(cache) == ["hook_sae_acts_post", "hook_sae_acts_post_grad"]
    torch.testing.assert_close(cache["hook_sae_acts_post"], reference_acts(sae, x), rtol=0, atol=1e-12)
    torch.testing.assert_close(cache["hook_sae_acts_post_grad"], sae.W_dec.detach().sum(-1).expand(BATCH, D_SAE),
                               rtol=0, atol=1e-12)


def test_add_hook_with_tl_keywords_counts_for_is_hooked_in_both_directions() -> None:
    point = randomized_sae().hook_sae_acts_pre
    point.add_hook(lambda t, hook: t, dir="bwd")
    assert point.is_hooked and len(point.bwd_hooks) == 1
    point.remove_hooks("both")
    assert not point.is_hooked and point.bwd_hooks == []
    with pytest.raises(ValueError, match="hook direction must be 'fwd' or 'bwd', got 'sideways'"):
        point.add_hook(lambda t, hook: t, dir="sideways")  # type: ignore[arg-type]


def test_permanent_hooks_survive_the_context_and_prepend_runs_first(x: torch.Tensor) -> None:
    sae = randomized_sae()
    order: list[str] = []
    sae.hook_sae_input.add_hook(lambda t, hook: order.append("permanent"), is_permanent=True)
    with sae.hooks(fwd_hooks=[("hook_sae_input", lambda t, hook: order.append("context"))]):
        sae.hook_sae_input.add_hook(lambda t, hook: order.append("first"), prepend=True)
        sae(x)
    assert order == ["first", "permanent", "context"]
    assert [entry.is_permanent for entry in sae.hook_sae_input.fwd_hooks] == [False, True]
    sae.reset_hooks()
    assert [entry.is_permanent for entry in sae.hook_sae_input.fwd_hooks] == [True]
    sae.reset_hooks(including_permanent=True)
    assert not sae.hook_sae_input.is_hooked


def test_nested_contexts_remove_only_their_own_hooks(x: torch.Tensor) -> None:
    sae = randomized_sae()
    with sae.hooks(fwd_hooks=[("hook_sae_acts_post", lambda t, hook: t * 0)]):
        with sae.hooks(fwd_hooks=[(lambda name: name.endswith("_input"), lambda t, hook: t * 2)]):
            assert sae.hook_sae_input.is_hooked
        assert not sae.hook_sae_input.is_hooked
        torch.testing.assert_close(sae(x), sae.b_dec.detach().expand(BATCH, D_IN), rtol=0, atol=1e-12)
    torch.testing.assert_close(sae(x), relu_sae_reference(sae, x), rtol=0, atol=1e-12)


def test_cache_all_and_cache_some_fill_the_dict_until_reset(x: torch.Tensor) -> None:
    sae = randomized_sae()
    everything: dict[str, torch.Tensor] = {}
    sae.cache_all(everything)
    some: dict[str, torch.Tensor] = {}
    sae.cache_some(some, lambda name: name == "hook_sae_acts_post")
    sae(x)
    assert sorted(everything) == ["hook_sae_acts_post", "hook_sae_acts_pre", "hook_sae_input",
                                  "hook_sae_output", "hook_sae_recons"]
    assert list(some) == ["hook_sae_acts_post"]
    torch.testing.assert_close(some["hook_sae_acts_post"], reference_acts(sae, x), rtol=0, atol=1e-12)
    sae.reset_hooks()
    assert not any(point.is_hooked for point in sae.hook_points())


def test_hook_dict_survives_swapping_a_hook_point_out(x: torch.Tensor) -> None:
    """Code that swaps points out for a while (SAELens's hook disabling) restores them from hook_dict."""
    sae = randomized_sae()
    points = dict(sae.hook_dict)
    for name in points:
        setattr(sae, name, torch.nn.Identity())
    assert sae.hook_dict == points
    for name, point in sae.hook_dict.items():
        setattr(sae, name, point)
    cached = sae.run_with_cache(x)[1]["hook_sae_acts_post"]
    torch.testing.assert_close(cached, reference_acts(sae, x), rtol=0, atol=1e-12)


def test_hook_points_pickle_and_copy_as_saecore_hook_points(x: torch.Tensor) -> None:
    sae = randomized_sae()
    for clone in (pickle.loads(pickle.dumps(sae)), copy.deepcopy(sae)):
        assert type(clone.hook_sae_acts_post) is HookPoint
        assert clone.hook_dict["hook_sae_acts_post"] is clone.hook_sae_acts_post
        torch.testing.assert_close(clone(x), relu_sae_reference(sae, x), rtol=0, atol=1e-12)
