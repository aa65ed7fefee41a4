"""The temporal SAE against the float64 reference in ``temporal_reference``."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from temporal_reference import random_params, reference

from saecore import SAE, ConfigError
from saecore.errors import UnsafeFoldError

BASE = {"architecture": "temporal", "d_in": 6, "d_sae": 24, "n_heads": 2, "bottleneck_factor": 3,
        "dtype": "float64"}
OPTIONS = {
    "defaults": {},
    "topk-5": {"kval_topk": 5},
    "relu": {"sae_diff_type": "relu", "kval_topk": 5},
    "untied": {"tied_weights": False, "kval_topk": 7},
    "tied-no-b-dec": {"apply_b_dec_to_input": False},
    "untied-no-b-dec": {"apply_b_dec_to_input": False, "tied_weights": False},
    "scalar-rescale": {"normalize_activations": "constant_scalar_rescale", "activation_normalization_factor": 0.25},
    "two-layers": {"n_attn_layers": 2, "kval_topk": 4},
    "no-attention": {"n_attn_layers": 0},
    "one-head": {"n_heads": 1, "bottleneck_factor": 6},
}


def build(cfg: dict[str, Any], params: dict[str, torch.Tensor]) -> SAE[Any]:
    sae = SAE.from_dict(cfg)
    sae.load_state_dict(params)
    return sae


def sequences(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 + 0.5


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_encode_decode_and_forward_match_the_formulas(options: dict[str, Any]) -> None:
    cfg = {**BASE, **options}
    params = random_params(cfg, seed=1)
    sae = build(cfg, params)
    x = sequences(2, 3, 5)
    z_novel, z_pred, novel_out, full_out = reference(cfg, params, x)
    with torch.no_grad():
        novel, predicted = sae.encode_with_predictions(x)
        torch.testing.assert_close(novel, z_novel, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(predicted, z_pred, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae.encode(x), z_novel, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae.decode(sae.encode(x)), novel_out, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(sae(x), full_out, rtol=1e-10, atol=1e-12)
    firing = float((z_novel != 0).double().mean())
    assert 0 < firing < 1
    if cfg.get("n_attn_layers", 1):
        assert float(z_pred.abs().sum()) > 0


def test_positions_run_along_the_second_to_last_dimension() -> None:
    cfg = {**BASE, "kval_topk": 5}
    sae = build(cfg, random_params(cfg, seed=3))
    x = sequences(4, 2, 3, 4)
    with torch.no_grad():
        nested = sae(x)
        torch.testing.assert_close(nested.reshape(6, 4, 6), sae(x.reshape(6, 4, 6)))
        torch.testing.assert_close(sae(x[0, 0]), nested[0, 0])
        torch.testing.assert_close(sae(x[0, 0, 0]), sae(x[0, 0, :1])[0])


def test_later_positions_see_earlier_ones_only() -> None:
    cfg = {**BASE, "kval_topk": 5}
    sae = build(cfg, random_params(cfg, seed=5))
    x = sequences(6, 1, 5)
    changed = x.clone()
    changed[0, 3] += 1.0
    with torch.no_grad():
        before, after = sae(x), sae(changed)
    torch.testing.assert_close(after[0, :3], before[0, :3])
    assert not torch.allclose(after[0, 4], before[0, 4])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"d_sae": 20}, "d_sae = 20 is not a multiple of bottleneck_factor \\* n_heads = 3 \\* 2 = 6"),
        ({"kval_topk": 30}, "kval_topk = 30 is larger than d_sae = 24"),
        ({"normalize_activations": "covariance_whitening"}, "normalize_activations"),
        ({"activation_normalization_factor": 0.0}, "activation_normalization_factor"),
    ],
)
def test_config_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SAE.from_dict({**BASE, **fields})


def test_an_input_scale_cannot_be_folded_in() -> None:
    cfg = {**BASE, "normalize_activations": "expected_average_only_in"}
    sae = build(cfg, random_params(cfg, seed=7))
    with pytest.raises(UnsafeFoldError, match="activation_normalization_factor"):
        sae.fold_activation_norm_scaling_factor(2.0)
    assert sae.cfg.normalize_activations == "expected_average_only_in"


def test_forward_runs_the_reconstruction_hook_on_the_full_reconstruction() -> None:
    cfg = {**BASE, "kval_topk": 5}
    params = random_params(cfg, seed=8)
    sae = build(cfg, params)
    seen: list[torch.Tensor] = []
    sae.hook_sae_recons.add_hook(lambda recons, hook: seen.append(recons.detach().clone()))
    x = sequences(9, 2, 4)
    with torch.no_grad():
        sae(x)
    z_novel, z_pred, _, _ = reference(cfg, params, x)
    torch.testing.assert_close(seen[0], (z_novel + z_pred) @ params["W_dec"] + params["b_dec"], rtol=1e-10,
                               atol=1e-12)
