"""Inference decoding through the nonzeros: both routes against float64, and when each is taken."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from saecore import SAE, sparse_decode
from saecore.sparse_decode import SPARSE_DECODE_MAX_DENSITY, decode_product, decode_through_nonzeros
from saecore.testing.architecture_conformance import randomize_parameters

D_IN, D_SAE = 8, 64


def activations(shape: tuple[int, ...], per_row: int, seed: int = 0) -> torch.Tensor:
    """Nonnegative float64 activations with ``per_row`` nonzeros per row, at random latents."""
    generator = torch.Generator().manual_seed(seed)
    kept = torch.rand(*shape, D_SAE, generator=generator).topk(per_row, dim=-1).indices
    values = torch.rand(*shape, per_row, generator=generator, dtype=torch.float64) + 0.1
    return torch.zeros(*shape, D_SAE, dtype=torch.float64).scatter_(-1, kept, values)


def reference_decode(acts: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """``Σ_i acts_i · W_dec,i`` in float64, as an elementwise sum rather than a matmul."""
    return (acts.double().unsqueeze(-1) * W_dec.double()).sum(dim=-2)


@pytest.fixture
def sparse_calls(monkeypatch: pytest.MonkeyPatch) -> list[torch.Size]:
    """Record the shape of every activation tensor the nonzero route decodes."""
    calls: list[torch.Size] = []

    def spy(feature_acts: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
        calls.append(feature_acts.shape)
        return decode_through_nonzeros(feature_acts, W_dec)

    monkeypatch.setattr(sparse_decode, "decode_through_nonzeros", spy)
    return calls


def make_sae(**cfg: Any) -> SAE[Any]:
    sae = SAE.from_dict({"architecture": "jumprelu", "d_in": D_IN, "d_sae": D_SAE, "dtype": "float64", **cfg})
    randomize_parameters(sae, seed=2)
    return sae


@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_both_routes_match_float64_reference(shape: tuple[int, ...]) -> None:
    W_dec = torch.randn(D_SAE, D_IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    acts = activations(shape, per_row=5)
    acts[0, ...] = 0  # an input with no active latent decodes to zero
    expected = reference_decode(acts, W_dec)
    torch.testing.assert_close(decode_through_nonzeros(acts, W_dec), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(acts @ W_dec, expected, rtol=1e-12, atol=1e-12)


def test_sparse_activations_take_the_nonzero_route(sparse_calls: list[torch.Size]) -> None:
    sae = make_sae()
    at_threshold = int(SPARSE_DECODE_MAX_DENSITY * D_SAE)  # 4 of 64: exactly the threshold density
    acts = activations((2, 5), per_row=at_threshold)
    with torch.no_grad():
        decoded = sae.decode(acts)
    assert sparse_calls == [acts.shape]
    torch.testing.assert_close(decoded, reference_decode(acts, sae.W_dec) + sae.b_dec, rtol=1e-12, atol=1e-12)


def test_denser_activations_take_the_matmul(sparse_calls: list[torch.Size]) -> None:
    sae = make_sae()
    acts = activations((7,), per_row=int(SPARSE_DECODE_MAX_DENSITY * D_SAE) + 1)
    with torch.no_grad():
        decoded = sae.decode(acts)
    assert sparse_calls == []
    torch.testing.assert_close(decoded, reference_decode(acts, sae.W_dec) + sae.b_dec, rtol=1e-12, atol=1e-12)


def test_a_wanted_gradient_keeps_the_matmul(sparse_calls: list[torch.Size]) -> None:
    sae = make_sae()
    acts = activations((7,), per_row=2).requires_grad_(True)
    sae.decode(acts).sum().backward()
    assert sparse_calls == []
    torch.testing.assert_close(acts.grad, sae.W_dec.detach().sum(dim=1).expand(7, D_SAE))
    assert sae.W_dec.grad is not None


def test_forward_of_a_sparse_sae_matches_the_float64_formula(sparse_calls: list[torch.Size]) -> None:
    sae = make_sae()
    with torch.no_grad():
        sae.b_enc.fill_(-1.4)  # with the thresholds, few latents fire: a sparse code
        sae.threshold.fill_(0.2)
    x = torch.randn(3, 4, D_IN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    p = {k: v.detach() for k, v in sae.state_dict().items()}
    hidden_pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    acts = torch.relu(hidden_pre) * (hidden_pre > p["threshold"]).double()
    assert 0 < int(torch.count_nonzero(acts)) <= SPARSE_DECODE_MAX_DENSITY * acts.numel()
    with torch.inference_mode():
        out = sae(x)
    assert sparse_calls == [torch.Size([3, 4, D_SAE])]
    torch.testing.assert_close(out, reference_decode(acts, p["W_dec"]) + p["b_dec"], rtol=1e-12, atol=1e-12)


def test_decode_product_leaves_other_dtypes_to_the_matmul() -> None:
    W_dec = torch.randn(D_SAE, D_IN, dtype=torch.float64)
    with torch.no_grad(), pytest.raises(RuntimeError):
        decode_product(activations((3,), per_row=1).float(), W_dec)
