"""MatmulCounter records each matrix product once, with its true size, forward and backward.

The sizes are distinct (N, K, M, B = 2, 3, 5, 7) so a count that mixes up the dimensions
(``rows × columns`` for ``rows × inner × columns``, the wrong factor's shape) gives
another number than the one asserted.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saecore.testing import MatmulCounter, MatrixProduct

N, K, M, B = 2, 3, 5, 7


def tensor(*shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(len(shape) * 10 + shape[-1]),
                       dtype=torch.float64)


def test_each_product_kernel_is_recorded_with_its_factors() -> None:
    a, b, v = tensor(N, K), tensor(K, M), tensor(K)
    batch_a, batch_b = tensor(B, N, K), tensor(B, K, M)
    with MatmulCounter() as counter:
        torch.mm(a, b)
        torch.addmm(tensor(N, M), a, b)
        torch.bmm(batch_a, batch_b)
        torch.baddbmm(tensor(B, N, M), batch_a, batch_b)
        torch.addbmm(tensor(N, M), batch_a, batch_b)
        torch.mv(a, v)
        torch.addmv(tensor(N), a, v)
        torch.dot(v, v)
        torch.vdot(v, v)
    assert counter.products == [
        MatrixProduct("mm", (N, K), (K, M)),
        MatrixProduct("addmm", (N, K), (K, M)),
        MatrixProduct("bmm", (B, N, K), (B, K, M)),
        MatrixProduct("baddbmm", (B, N, K), (B, K, M)),
        MatrixProduct("addbmm", (B, N, K), (B, K, M)),
        MatrixProduct("mv", (N, K), (K,)),
        MatrixProduct("addmv", (N, K), (K,)),
        MatrixProduct("dot", (K,), (K,)),
        MatrixProduct("vdot", (K,), (K,)),
    ]
    assert counter.multiply_adds == [N * K * M] * 2 + [B * N * K * M] * 3 + [N * K] * 2 + [K] * 2


def test_composite_calls_count_as_the_products_they_run() -> None:
    a, b, v = tensor(N, K), tensor(K, M), tensor(K)
    batch_a, batch_b = tensor(B, N, K), tensor(B, K, M)
    weight, bias = tensor(M, K), tensor(M)
    with MatmulCounter() as counter:
        _ = a @ b
        F.linear(a, weight, bias)
        F.linear(a, weight)
        _ = batch_a @ batch_b
        _ = batch_a @ b  # one product over all B·N rows
        torch.einsum("bnk,bkm->bnm", batch_a, batch_b)
        _ = a @ v
        _ = v @ v
    assert counter.multiply_adds == [N * K * M] * 3 + [B * N * K * M] * 3 + [N * K, K]


def test_elementwise_work_is_no_product() -> None:
    a, b = tensor(N, K), tensor(K, M)
    with MatmulCounter() as counter:
        (a.unsqueeze(-1) * b).sum(dim=-2)  # the values of a @ b, without a product kernel
        torch.relu(a).pow(2).mean()
        F.embedding_bag(torch.tensor([0, 2]), b, torch.tensor([0]), per_sample_weights=a[0, :2], mode="sum")
    assert counter.products == []


@pytest.mark.parametrize(
    ("input_grad", "weight_grad", "products"), [(True, True, 3), (False, True, 2), (True, False, 2)]
)
def test_backward_products_are_counted_and_the_gradients_unchanged(
    input_grad: bool, weight_grad: bool, products: int
) -> None:
    """``y = x Wᵀ + b``: forward one product; backward one per factor that wants a gradient."""
    leaves = {"x": tensor(N, K).requires_grad_(input_grad), "weight": tensor(M, K).requires_grad_(weight_grad),
              "bias": tensor(M).requires_grad_(True)}
    plain = {name: leaf.detach().clone().requires_grad_(leaf.requires_grad) for name, leaf in leaves.items()}
    F.linear(plain["x"], plain["weight"], plain["bias"]).pow(2).sum().backward()

    with MatmulCounter() as counter:
        F.linear(leaves["x"], leaves["weight"], leaves["bias"]).pow(2).sum().backward()
    assert counter.multiply_adds == [N * K * M] * products
    assert [product.kernel for product in counter.products] == ["addmm"] + ["mm"] * (products - 1)
    for name, leaf in leaves.items():
        assert (leaf.grad is None) == (plain[name].grad is None), name
        if leaf.grad is not None:
            assert torch.equal(leaf.grad, plain[name].grad), name


def test_a_product_under_autocast_is_counted_once() -> None:
    x, weight = tensor(N, K).float(), tensor(M, K).float()
    with MatmulCounter() as counter, torch.autocast("cpu", dtype=torch.bfloat16):
        out = F.linear(x, weight)
    assert out.dtype == torch.bfloat16
    assert counter.multiply_adds == [N * K * M]


def test_only_products_inside_the_block_are_counted() -> None:
    a, b, v = tensor(N, K), tensor(K, M), tensor(K)
    _ = a @ b
    with MatmulCounter() as counter:
        torch.mv(a, v)
    _ = a @ b
    assert counter.multiply_adds == [N * K]


def test_inference_mode_is_refused_as_it_would_hide_every_product() -> None:
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        MatmulCounter().__enter__()
