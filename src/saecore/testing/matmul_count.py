"""Counting the matrix products code runs, to prove a training step does no more than it must.

An SAE step's cost is its matrix products, ``B × d_in × d_sae`` multiply-adds each;
everything else is elementwise. A product too many (autograd differentiating an input
whose gradient nobody uses, a fused product split in two) leaves every number a test
compares unchanged and only shows in the time. Counting the products that reach the
kernels, forward and backward, states the step's cost in a test::

    from saecore.testing import MatmulCounter

    with MatmulCounter() as counter:
        sae.training_forward_pass(step_input).loss.backward()
    assert sorted(counter.multiply_adds) == [d_in * d_sae] + [batch * d_in * d_sae] * 5

The counter sees what the kernels run, not what the code wrote: ``@``, ``torch.matmul``,
``F.linear`` and ``einsum`` become the kernels below, so a ``[B, T, d_in] @ W`` is one
product of ``B·T·d_in·d_sae``, and a product written as a broadcast multiply and a sum
is no product at all. Run ``backward()`` inside the ``with`` block: autograd's products
are counted only while the counter is active. Count inference under ``torch.no_grad()``:
``torch.inference_mode()`` hides every kernel from the counter, which would then report
no product at all (entering the counter in inference mode is refused for that reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_aten = torch.ops.aten

# Kernels whose last two tensor arguments are the factors of a product (an ``add…``
# kernel's first argument is the term it adds, not a factor).
_PRODUCT_KERNELS = frozenset({
    _aten.mm, _aten.addmm, _aten._addmm_activation, _aten.bmm, _aten.baddbmm, _aten.addbmm,
    _aten.mv, _aten.addmv, _aten.dot, _aten.vdot,
})


@dataclass(frozen=True)
class MatrixProduct:
    """One product a kernel ran: the kernel's name and the shapes of its two factors."""

    kernel: str
    left: tuple[int, ...]
    right: tuple[int, ...]

    @property
    def multiply_adds(self) -> int:
        """Every entry of the left factor meets every column of the right one once."""
        columns = self.right[-1] if len(self.right) > 1 else 1
        return math.prod(self.left) * columns


class MatmulCounter(TorchDispatchMode):
    """Records every matrix product run inside its ``with`` block, in the order they ran."""

    def __init__(self) -> None:
        super().__init__()
        self.products: list[MatrixProduct] = []

    def __enter__(self) -> MatmulCounter:
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "MatmulCounter: entered under torch.inference_mode(), which hides every kernel from it, so it "
                "would count no product; count under torch.no_grad() instead"
            )
        return super().__enter__()

    @property
    def multiply_adds(self) -> list[int]:
        """The multiply-adds of each product, in order; compare them ``sorted``, as backward's order is autograd's."""
        return [product.multiply_adds for product in self.products]

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func.overloadpacket in _PRODUCT_KERNELS:
            left, right = [arg for arg in args if isinstance(arg, torch.Tensor)][-2:]
            self.products.append(MatrixProduct(func.overloadpacket.__name__, tuple(left.shape), tuple(right.shape)))
        return func(*args, **(kwargs or {}))
