"""Checks an architecture's fast training route against its own dense step.

A recipe that overrides ``training_forward_pass`` with a faster route (over its
activations' support, see ``saecore.sparse``) promises the generic step's numbers: the
same losses, outputs, firing counts and parameter gradients. This suite runs both on one
float64 SAE and batch, on CPU where the support route applies, and checks that the fast
route ran with only the encoder product dense.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import torch

from saecore.testing.matmul_count import MatmulCounter
from saecore.training_sae import TrainCoefficientConfig, TrainingSAE, TrainStepInput, TrainStepOutput

D_IN = 16
D_SAE = 96
BATCH = 64
N_DEAD = 12


class _RouteRun(NamedTuple):
    output: TrainStepOutput
    grads: dict[str, torch.Tensor | None]
    products: list[int]


def _dense(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_dense() if tensor.is_sparse else tensor


class FastRouteConformance:
    """Pytest base class: set ``training_recipe``; override :meth:`sparsify` to make the batch sparse.

    ``config_overrides`` are training-config fields (a sparsity coefficient, ``k``). The
    batch must come out at most 1/16 dense (``saecore.sparse.SPARSE_TRAINING_MAX_DENSITY``)
    for the support route to run; :meth:`sparsify` sets the parameters that make it so
    (a negative encoder bias, a high threshold).
    """

    training_recipe: ClassVar[str]
    config_overrides: ClassVar[dict[str, Any]] = {}
    rtol: ClassVar[float] = 1e-9
    atol: ClassVar[float] = 1e-10

    def sparsify(self, sae: TrainingSAE[Any]) -> None:
        """Make the batch's activations sparse (nothing by default: a TopK code already is)."""

    def make_sae(self) -> TrainingSAE[Any]:
        cfg = {"architecture": self.training_recipe, "d_in": D_IN, "d_sae": D_SAE, "dtype": "float64",
               **self.config_overrides}
        sae = TrainingSAE.from_dict(cfg)
        generator = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for param in sae.parameters():
                noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
                param.copy_(noise / D_IN**0.5 if param.ndim > 1 else 0.1 * noise)
        self.sparsify(sae)
        return sae

    def step_input(self, sae: TrainingSAE[Any], dead: bool) -> TrainStepInput:
        generator = torch.Generator().manual_seed(8)
        batch = torch.randn(BATCH, D_IN, generator=generator, dtype=torch.float64)
        coefficients = {
            name: value.value if isinstance(value, TrainCoefficientConfig) else value
            for name, value in sae.get_coefficients().items()
        }
        dead_mask = None
        if dead:
            dead_mask = torch.zeros(D_SAE, dtype=torch.bool)
            dead_mask[torch.randperm(D_SAE, generator=generator)[:N_DEAD]] = True
        return TrainStepInput(batch, coefficients, dead_mask, n_training_steps=0)

    @staticmethod
    def _run(step: Any, sae: TrainingSAE[Any], step_input: TrainStepInput) -> _RouteRun:
        sae.zero_grad(set_to_none=True)
        with MatmulCounter() as counter:
            output = step(step_input)
            output.loss.backward()
        return _RouteRun(output, {name: param.grad for name, param in sae.named_parameters()}, counter.multiply_adds)

    def test_fast_route_matches_the_dense_step(self) -> None:
        self.check_fast_route_against_dense_step(dead=False)

    def test_fast_route_matches_the_dense_step_with_dead_latents(self) -> None:
        self.check_fast_route_against_dense_step(dead=True)

    def check_fast_route_against_dense_step(self, dead: bool) -> None:
        """Both routes on one SAE and batch (with some latents counted dead when ``dead``)."""
        sae = self.make_sae()
        step_input = self.step_input(sae, dead)
        fast_run = self._run(sae.training_forward_pass, sae, step_input)
        dense_run = self._run(lambda s: TrainingSAE.training_forward_pass(sae, s), sae, step_input)
        fast, dense = fast_run.output, dense_run.output

        full_products = [n for n in fast_run.products if n == BATCH * D_IN * D_SAE]
        assert len(full_products) == 1, (
            f"the fast route ran {len(full_products)} products of batch × d_in × d_sae, not only the encoder's: "
            "it did not take the support route (is the batch at most 1/16 dense? see sparsify)"
        )
        close = {"rtol": self.rtol, "atol": self.atol}
        assert set(fast.losses) == set(dense.losses)
        for name in dense.losses:
            torch.testing.assert_close(
                fast.losses[name], dense.losses[name], **close, msg=lambda m, n=name: f"{n}: {m}"
            )
        torch.testing.assert_close(fast.loss, dense.loss, **close)
        torch.testing.assert_close(fast.sae_out, dense.sae_out, **close)
        torch.testing.assert_close(_dense(fast.feature_acts), _dense(dense.feature_acts), **close)
        torch.testing.assert_close(fast.latent_firing_counts(), dense.latent_firing_counts())
        for name, dense_grad in dense_run.grads.items():
            fast_grad = fast_run.grads[name]
            if dense_grad is None:
                assert fast_grad is None or not fast_grad.any(), f"{name}: the fast route gave a gradient, dense none"
                continue
            assert fast_grad is not None, f"{name}: the dense step gave a gradient, the fast route none"
            # A parameter an architecture keeps in float32 (JumpReLU's threshold) is compared at float32's tolerance.
            grad_close = close if dense_grad.dtype == torch.float64 else {}
            torch.testing.assert_close(fast_grad, dense_grad, **grad_close, msg=lambda m, n=name: f"grad of {n}: {m}")
