"""The kernels are torch custom operators: opcheck passes, torch.compile traces them, meta tensors get shapes."""

from __future__ import annotations

import pytest
import torch
from saecore_sae_topk.code_dots import code_dots
from saecore_sae_topk.native_kernels import CODE_DOTS_OP, ROW_TOPK_OP
from saecore_sae_topk.row_topk import row_topk

needs_kernels = pytest.mark.skipif(
    ROW_TOPK_OP is None or CODE_DOTS_OP is None, reason="saecore-sae-topk was installed without its kernels"
)
pytestmark = needs_kernels


def scores_of(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("scores", "k"),
    [
        (scores_of(64, 512), 16),
        (scores_of(2, 33, 100), 7),  # leading dimensions
        (scores_of(16, 300)[:, 50:250], 8),  # a column slice, read in place
    ],
)
def test_row_topk_passes_opcheck(scores: torch.Tensor, k: int) -> None:
    torch.library.opcheck(torch.ops.saecore_topk.row_topk.default, (scores, k, 2))


@pytest.mark.parametrize("scores", [scores_of(64, 512), scores_of(16, 300)[:, 50:250]])
def test_entries_not_below_passes_opcheck(scores: torch.Tensor) -> None:
    torch.library.opcheck(torch.ops.saecore_topk.entries_not_below.default, (scores, 1.5, 2))


def test_code_dots_passes_opcheck() -> None:
    generator = torch.Generator().manual_seed(1)
    grad, W_dec = torch.randn(96, 24, generator=generator), torch.randn(200, 24, generator=generator)
    latents = torch.randint(0, 200, (96, 8), generator=generator)
    torch.library.opcheck(torch.ops.saecore_topk.code_dots.default, (grad, W_dec, latents, 2))


def test_torch_compile_traces_both_kernels_and_the_gradient_without_a_graph_break() -> None:
    def select_and_dot(scores: torch.Tensor, grad: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
        values, indices = row_topk(scores, 8, threads=1)
        return values * code_dots(grad, W_dec, indices, threads=1)

    scores, grad, W_dec = scores_of(64, 128, seed=2), scores_of(64, 16, seed=3), scores_of(128, 16, seed=4)
    compiled = torch.compile(select_and_dot, backend="aot_eager", fullgraph=True)
    leaf = scores.clone().requires_grad_(True)
    expected = select_and_dot(leaf, grad, W_dec)
    expected.sum().backward()
    eager_grad, leaf.grad = leaf.grad, None
    result = compiled(leaf, grad, W_dec)
    assert torch.equal(result, expected)
    result.sum().backward()
    assert leaf.grad is not None and torch.equal(leaf.grad, eager_grad)


def test_meta_tensors_get_output_shapes_without_running_a_kernel() -> None:
    values, indices = torch.ops.saecore_topk.row_topk(torch.empty(4, 3, 16, device="meta"), 2, 1)
    assert (values.device.type, values.shape, indices.dtype) == ("meta", (4, 3, 2), torch.int64)
    grad, W_dec = torch.empty(5, 8, device="meta"), torch.empty(9, 8, device="meta")
    out = torch.ops.saecore_topk.code_dots(grad, W_dec, torch.empty(5, 3, dtype=torch.int64, device="meta"), 1)
    assert (out.device.type, out.shape) == ("meta", (5, 3))
