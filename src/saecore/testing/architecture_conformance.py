"""Checks every SAE architecture must pass, whoever wrote it.

The checks exercise the public contract only (``SAE.from_dict``, ``save_model``,
``load_from_disk``, ``fold_W_dec_norm``, ``.to``, ``training_forward_pass``,
``save_inference_model``), so a plugin that passes them works with the loader, the
trainer and the CLI. What the kit cannot guess, the subclass declares: parameters that
must be non-negative, and operations the architecture deliberately refuses.

A coder that predicts a target (a transcoder, ``cfg.PREDICTS_TARGET``) runs the same checks
with its outputs ``d_out`` wide (set ``d_out`` in ``config_overrides``) and training steps
given random targets; the error-term check, which needs the model's activation at the
output hook, is skipped for it.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar

import torch

from saecore.sae import SAE
from saecore.training_sae import TrainCoefficientConfig, TrainingSAE, TrainStepInput

D_IN = 16
D_SAE = 48
REFUSABLE_OPERATIONS = ("fold_W_dec_norm",)


def randomize_parameters(module: torch.nn.Module, seed: int = 0, nonnegative: Collection[str] = ()) -> None:
    """Give every parameter non-trivial values so equality checks mean something.

    Parameters named in ``nonnegative`` (by their own name, e.g. ``"threshold"``) get the
    absolute value, for architectures whose formulas assume it.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
            scale = 0.3 if param.ndim > 1 else 0.05
            value = noise * scale
            if name.rsplit(".", 1)[-1] in nonnegative:
                value = value.abs()
            param.copy_(value.to(param.dtype))


class ArchitectureConformance:
    """Pytest base class; subclasses set the class attributes below."""

    architecture: ClassVar[str]
    training_recipe: ClassVar[str | None] = None
    config_overrides: ClassVar[dict[str, Any]] = {}
    training_config_overrides: ClassVar[dict[str, Any]] = {}
    nonnegative_parameters: ClassVar[tuple[str, ...]] = ()
    """Parameter names whose random test values must be >= 0 (a JumpReLU threshold)."""
    refused_operations: ClassVar[dict[str, type[Exception]]] = {}
    """Operations the architecture deliberately refuses, each with the error it raises.

    The kit then checks the refusal instead of the operation: the error is raised and the
    SAE is left as it was. One of ``REFUSABLE_OPERATIONS``.
    """

    # -- helpers ---------------------------------------------------------------------
    def make_sae(self, **fields: Any) -> SAE[Any]:
        cfg = {"architecture": self.architecture, "d_in": D_IN, "d_sae": D_SAE, **self.config_overrides, **fields}
        sae = SAE.from_dict(cfg)
        randomize_parameters(sae, nonnegative=self.nonnegative_parameters)
        return sae

    def make_training_sae(self, **fields: Any) -> TrainingSAE[Any]:
        assert self.training_recipe is not None
        cfg = {
            "architecture": self.training_recipe,
            "d_in": D_IN,
            "d_sae": D_SAE,
            **self.config_overrides,
            **self.training_config_overrides,
            **fields,
        }
        return TrainingSAE.from_dict(cfg)

    @staticmethod
    def inputs(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(*shape, D_IN, generator=generator, dtype=dtype)

    @staticmethod
    def step_input(sae: TrainingSAE[Any], x: torch.Tensor, step: int = 0) -> TrainStepInput:
        """A step on ``x``; a coder that predicts a target gets a fixed random one, a linear map of ``x``."""
        coefficients = {
            name: (value.value if isinstance(value, TrainCoefficientConfig) else float(value))
            for name, value in sae.get_coefficients().items()
        }
        target = None
        if sae.cfg.PREDICTS_TARGET:
            generator = torch.Generator().manual_seed(2)
            target = x @ torch.randn(x.shape[-1], sae.cfg.d_target, generator=generator, dtype=x.dtype)
        return TrainStepInput(
            sae_in=x,
            target=target,  # type: ignore[arg-type]
            coefficients=coefficients,
            dead_neuron_mask=torch.zeros(sae.cfg.d_sae, dtype=torch.bool),
            n_training_steps=step,
        )

    def _require_training(self) -> None:
        import pytest

        if self.training_recipe is None:
            pytest.skip("no training recipe declared")

    # -- inference checks ------------------------------------------------------------------
    def test_registered_under_its_name(self) -> None:
        sae = self.make_sae()
        assert sae.cfg.architecture() == self.architecture
        assert sae.cfg.to_dict()["architecture"] == self.architecture

    def test_save_load_round_trip_is_identical(self, tmp_path: Path) -> None:
        sae = self.make_sae()
        x = self.inputs(5)
        sae.save_model(tmp_path / "sae")
        loaded = SAE.load_from_disk(tmp_path / "sae")
        assert type(loaded) is type(sae)
        assert torch.equal(loaded.encode(x), sae.encode(x))
        assert torch.equal(loaded(x), sae(x))
        assert loaded.cfg.to_dict() == {**sae.cfg.to_dict(), "metadata": loaded.cfg.metadata.to_dict()}

    def test_accepts_any_leading_shape(self) -> None:
        sae = self.make_sae()
        d_out = sae.cfg.d_target
        flat = self.inputs(6)
        batched = flat.reshape(2, 3, D_IN)
        assert sae.encode(batched).shape == (2, 3, D_SAE)
        assert sae(batched).shape == (2, 3, d_out)
        torch.testing.assert_close(sae(batched).reshape(6, d_out), sae(flat), rtol=1e-5, atol=1e-6)
        assert sae(flat[0]).shape == (d_out,)

    def test_dtype_moves(self) -> None:
        sae = self.make_sae()
        x = self.inputs(4, dtype=torch.float64)
        reference = sae.to(torch.float64)(x)
        assert sae.cfg.dtype == "float64"
        assert all(p.dtype == torch.float64 for p in sae.parameters())
        half = sae.to(dtype=torch.bfloat16)
        assert half.cfg.dtype == "bfloat16"
        assert half(x).dtype == torch.bfloat16
        back = half.to(torch.float32)
        assert back.cfg.dtype == "float32"
        torch.testing.assert_close(back(x.float()).double(), reference, rtol=0.05, atol=0.05)

    def test_device_moves(self) -> None:
        sae = self.make_sae()
        x = self.inputs(3)
        expected = sae(x)
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        for device in devices:
            moved = sae.to(device)
            assert moved.cfg.device.startswith(device)
            assert all(p.device.type == device for p in moved.parameters())
            torch.testing.assert_close(moved(x.to(device)).cpu(), expected, rtol=1e-4, atol=1e-5)

    def test_declared_refusals_are_operations_the_kit_knows(self) -> None:
        unknown = sorted(set(self.refused_operations) - set(REFUSABLE_OPERATIONS))
        assert not unknown, f"refused_operations names {unknown}; allowed: {', '.join(REFUSABLE_OPERATIONS)}"

    def test_fold_W_dec_norm_keeps_outputs(self) -> None:
        sae = self.make_sae().to(torch.float64)
        x = self.inputs(8, dtype=torch.float64)
        before = sae(x)
        if "fold_W_dec_norm" in self.refused_operations:
            self._check_refusal(sae, "fold_W_dec_norm", x, before)
            return
        sae.fold_W_dec_norm()
        torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE, dtype=torch.float64))
        torch.testing.assert_close(sae(x), before, rtol=1e-9, atol=1e-9)

    def _check_refusal(self, sae: SAE[Any], operation: str, x: torch.Tensor, before: torch.Tensor) -> None:
        import pytest

        state = {name: value.clone() for name, value in sae.state_dict().items()}
        with pytest.raises(self.refused_operations[operation]):
            getattr(sae, operation)()
        assert all(torch.equal(value, state[name]) for name, value in sae.state_dict().items()), (
            f"{operation} raised but changed the SAE's weights; a refusal must leave the SAE as it was"
        )
        assert torch.equal(sae(x), before)

    def test_error_term_reconstructs_input(self) -> None:
        import pytest

        sae = self.make_sae().to(torch.float64)
        if sae.cfg.PREDICTS_TARGET:
            pytest.skip("a coder that predicts a target measures its error at the output hook, inside a model")
        sae.use_error_term = True
        x = self.inputs(4, dtype=torch.float64)
        torch.testing.assert_close(sae(x), x, rtol=1e-10, atol=1e-10)

    # -- training checks -------------------------------------------------------------------
    def test_training_sae_initialisation(self) -> None:
        self._require_training()
        sae = self.make_training_sae()
        norms = sae.W_dec.norm(dim=-1)
        expected = sae.cfg.decoder_init_norm
        torch.testing.assert_close(norms, torch.full_like(norms, expected))
        if not sae.cfg.PREDICTS_TARGET:
            torch.testing.assert_close(sae.W_enc.data, sae.W_dec.data.T)
        assert torch.count_nonzero(sae.b_dec) == 0

    def test_a_few_steps_lower_the_loss(self) -> None:
        self._require_training()
        torch.manual_seed(0)
        sae = self.make_training_sae()
        x = self.inputs(64)
        optimizer = torch.optim.Adam(sae.parameters(), lr=3e-3)
        first = sae.training_forward_pass(self.step_input(sae, x)).loss.item()
        for step in range(30):
            output = sae.training_forward_pass(self.step_input(sae, x, step))
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
        last = sae.training_forward_pass(self.step_input(sae, x, 30)).loss.item()
        assert last < first

    def test_training_sae_saves_as_inference_sae(self, tmp_path: Path) -> None:
        self._require_training()
        sae = self.make_training_sae().to(torch.float64)
        randomize_parameters(sae, seed=3, nonnegative=self.nonnegative_parameters)
        x = self.inputs(7, dtype=torch.float64)
        sae.save_inference_model(tmp_path / "inference")
        loaded = SAE.load_from_disk(tmp_path / "inference", dtype="float64")
        assert not isinstance(loaded, TrainingSAE)
        sae.eval()  # a recipe may select across the batch in training mode (batchtopk); eval mode is per input
        with torch.no_grad():
            torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=1e-7, atol=1e-9)
            torch.testing.assert_close(loaded(x), sae(x), rtol=1e-7, atol=1e-9)
