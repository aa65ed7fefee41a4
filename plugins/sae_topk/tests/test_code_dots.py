"""The compiled decoder-row dot products against a float64 reference, and their guards."""

from __future__ import annotations

import pytest
import torch
from saecore_sae_topk.code_dots import code_dots, code_dots_applies
from saecore_sae_topk.native_kernels import CODE_DOTS
from saecore_sae_topk.sparse_codes import code_support

needs_kernel = pytest.mark.skipif(CODE_DOTS is None, reason="saecore-sae-topk was installed without its kernels")


def reference_dots(grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    return (grad.double().unsqueeze(1) * W_dec.double()[latents]).sum(-1)


@needs_kernel
@pytest.mark.parametrize(("n_rows", "d", "n_latents", "k"), [(300, 512, 4096, 32), (64, 37, 50, 5), (5, 1, 3, 2),
                                                             (7, 16, 9, 0), (0, 8, 4, 3)])
def test_the_dots_match_float64(n_rows: int, d: int, n_latents: int, k: int) -> None:
    generator = torch.Generator().manual_seed(n_rows + d)
    grad = torch.randn(n_rows, d, generator=generator)
    W_dec = torch.randn(n_latents, d, generator=generator)
    latents = torch.randint(0, n_latents, (n_rows, k), generator=generator)
    out = code_dots(grad, W_dec, latents)
    assert out.shape == (n_rows, k) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), reference_dots(grad, W_dec, latents), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_results_do_not_depend_on_the_thread_count() -> None:
    generator = torch.Generator().manual_seed(1)
    grad, W_dec = torch.randn(1024, 96, generator=generator), torch.randn(200, 96, generator=generator)
    latents = torch.randint(0, 200, (1024, 8), generator=generator)
    assert torch.equal(code_dots(grad, W_dec, latents, threads=1), code_dots(grad, W_dec, latents, threads=4))


@needs_kernel
@pytest.mark.parametrize("bad_latent", [-1, 10])
def test_a_latent_outside_the_decoder_is_refused(bad_latent: int) -> None:
    latents = torch.zeros(4, 2, dtype=torch.int64)
    latents[3, 1] = bad_latent
    with pytest.raises(IndexError, match=r"outside \[0, 10\)"):
        code_dots(torch.randn(4, 8), torch.randn(10, 8), latents)


@pytest.mark.parametrize(
    ("grad", "W_dec", "latents"),
    [
        (torch.randn(4, 8, dtype=torch.float64), torch.randn(10, 8, dtype=torch.float64), torch.zeros(4, 2).long()),
        (torch.randn(8, 4).t(), torch.randn(10, 8), torch.zeros(4, 2).long()),
        (torch.randn(4, 8), torch.randn(10, 8), torch.zeros(4, 2, dtype=torch.int32)),
        (torch.randn(4, 8), torch.randn(10, 7), torch.zeros(4, 2).long()),
    ],
    ids=["float64", "transposed-grad", "int32-latents", "width-mismatch"],
)
def test_what_the_kernel_cannot_read_takes_the_embedding_bag_route(
    grad: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor
) -> None:
    assert not code_dots_applies(grad, W_dec, latents)
    if grad.shape[1] != W_dec.shape[1]:
        return
    dots = code_support(latents.long(), W_dec.shape[0]).row_dots(grad, W_dec).reshape(latents.shape)
    torch.testing.assert_close(dots.double(), reference_dots(grad, W_dec, latents.long()), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_code_supports_use_the_kernel_with_the_same_result() -> None:
    generator = torch.Generator().manual_seed(2)
    grad, W_dec = torch.randn(256, 64, generator=generator), torch.randn(300, 64, generator=generator)
    latents = torch.randint(0, 300, (256, 16), generator=generator)
    assert code_dots_applies(grad, W_dec, latents)
    dots = code_support(latents, 300).row_dots(grad, W_dec).reshape(latents.shape)
    torch.testing.assert_close(dots.double(), reference_dots(grad, W_dec, latents), rtol=1e-5, atol=1e-5)
