"""On CUDA the TopK plugin's compiled CPU kernels give way to torch ops; both must give the same answers."""

from __future__ import annotations

import pytest
import torch
from cuda_runs import needs_cuda
from saecore_sae_topk.code_dots import code_dots, code_dots_applies
from saecore_sae_topk.native_kernels import CODE_DOTS, ROW_TOPK
from saecore_sae_topk.row_topk import kernel_applies, row_topk
from saecore_sae_topk.sparse_codes import code_support

pytestmark = needs_cuda


@pytest.mark.skipif(ROW_TOPK is None, reason="the _row_topk kernel was not built (no C++ compiler at install)")
@pytest.mark.parametrize(("n_rows", "d_sae", "k"), [(64, 512, 8), (256, 4096, 64)])
def test_row_topk_on_cuda_selects_what_the_cpu_kernel_selects(n_rows: int, d_sae: int, k: int) -> None:
    scores = torch.randn(n_rows, d_sae, generator=torch.Generator().manual_seed(3))
    assert kernel_applies(scores, k) and not kernel_applies(scores.cuda(), k)
    cpu_values, cpu_indices = row_topk(scores, k)
    cuda_values, cuda_indices = row_topk(scores.cuda(), k)
    assert torch.equal(cuda_indices.cpu().sort(dim=-1).values, cpu_indices.sort(dim=-1).values)
    torch.testing.assert_close(cuda_values.cpu().sort(dim=-1).values, cpu_values.sort(dim=-1).values)


@pytest.mark.skipif(CODE_DOTS is None, reason="the _code_dots kernel was not built (no C++ compiler at install)")
def test_code_row_dots_on_cuda_match_the_cpu_kernel() -> None:
    generator = torch.Generator().manual_seed(4)
    grad, W_dec = torch.randn(128, 96, generator=generator), torch.randn(1024, 96, generator=generator)
    latents = torch.randint(0, 1024, (128, 16), generator=generator)
    assert code_dots_applies(grad, W_dec, latents) and not code_dots_applies(grad.cuda(), W_dec.cuda(), latents.cuda())
    on_cpu = code_dots(grad, W_dec, latents)
    on_cuda = code_support(latents.cuda(), 1024).row_dots(grad.cuda(), W_dec.cuda())
    torch.testing.assert_close(on_cuda.cpu().view(128, 16), on_cpu, rtol=1e-5, atol=1e-5)
