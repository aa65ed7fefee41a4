"""The training encoder's scores, with the bias carried in the matmul on CPU, against a float64 reference."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from saecore_sae_topk import sparse_encoder
from saecore_sae_topk.sparse_encoder import encoder_scores
from torch.utils._python_dispatch import TorchDispatchMode


class _Calls(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def parameters() -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(3)
    x, W_enc = torch.randn(40, 12, generator=generator), torch.randn(12, 64, generator=generator)
    b_enc, b_dec = torch.randn(64, generator=generator), torch.randn(12, generator=generator)
    return x, W_enc, b_enc, b_dec, torch.rand(64, generator=generator) + 0.5


@pytest.mark.parametrize("block_columns", [4096, 24])  # one product; blocks of 24 leaving a last one of 16
@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("subtract_b_dec", [True, False])
def test_float32_scores_match_the_float64_reference_without_a_broadcast_bias(
    block_columns: int, rescale: bool, subtract_b_dec: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sparse_encoder, "SCALED_ENCODER_BLOCK_COLUMNS", block_columns)
    x, W_enc, b_enc, b_dec, norms = parameters()
    used_norms: Any = norms if rescale else None
    with _Calls() as calls:
        sae_in, scores = encoder_scores(x, W_enc, b_enc, b_dec, used_norms, subtract_b_dec)
    assert "addmm" not in calls.names and "mm" in calls.names  # the bias rides in the product
    centred = x.double() - b_dec.double() if subtract_b_dec else x.double()
    expected = centred @ W_enc.double() + b_enc.double()
    if rescale:
        expected = expected * norms.double()
    torch.testing.assert_close(sae_in, x - b_dec if subtract_b_dec else x, rtol=0, atol=0)
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-5)


def test_other_dtypes_keep_addmm() -> None:
    x, W_enc, b_enc, b_dec, norms = (t.double() for t in parameters())
    with _Calls() as calls:
        _, scores = encoder_scores(x, W_enc, b_enc, b_dec, norms, True)
    assert "addmm" in calls.names
    torch.testing.assert_close(scores, ((x - b_dec) @ W_enc + b_enc) * norms, rtol=1e-12, atol=1e-12)
