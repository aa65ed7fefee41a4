"""Steady-state training-step throughput of saecore, SAELens and sparsify, against the machine's floor.

One step is what each library's own trainer runs per batch, minus data loading and the
LR schedule: the training forward pass and its dead-latent bookkeeping, ``backward``,
gradient clipping at norm 1, an Adam update and ``zero_grad``. Every implementation
trains on one fixed random batch that is reused, so only the step is timed. The
implementations of an architecture take turns step by step (in a rotating order),
together with a dense fp32 ``[B, d_in] × [d_in, d_sae]`` matmul, so load from other
processes hits all of them alike; ratios are the median over rounds of the ratio of two
steps taken back to back, and best-of-N is reported beside them.

The floor turns the matmul's FLOP/s into the best tok/s a step could reach:
``10·d_in·d_sae`` FLOP/token for a dense step (encoder and decoder forward, the
activation gradient of the decoder, the two weight gradients; no input gradient),
``16·d_in·d_sae`` for gated (its auxiliary decode adds a forward, an activation gradient
and a decoder-weight gradient; the shared encoder matmul and its gradient are counted
once), ``2·d_in·d_sae`` for a sparse TopK step (only the encoder forward is dense), and
the same for BatchTopK and Matryoshka BatchTopK, whose steps are sparse the same way (the
Matryoshka SAE has the nested levels ``MATRYOSHKA_LEVELS`` of ``d_sae``, in both libraries).

``--l0 N`` times standard, JumpReLU and gated in a trained-sparsity regime: every
implementation, SAELens included, starts from the same weights, whose encoder biases put
each latent's pre-activation (gated: its gate's) above its threshold on ``N·B/d_sae`` of
the batch's inputs, so about N latents are active per input (dense steps do the same work
at any L0; steps that exploit sparsity do less).

Peak memory of a step is measured afterwards. On CPU, one fresh process per (architecture,
implementation) measures the growth of the resident set during two steps (the kernel's
high-water mark ``VmHWM``, reset once the parameters and Adam state exist). On CUDA the
timing process measures it right after each case's timing: the growth of
``max_memory_allocated`` over two steps, which counts only what the step itself allocates.

``--autocast`` runs SAELens's step under bfloat16 autocast too (its trainer's ``autocast``
option), as saecore's. sparsify's forward always runs under bfloat16 autocast on a CUDA
device with bf16 (a decorator in its source), and its decoder uses its Triton kernel when
Triton is importable there; the script prints both. Each row's "of floor" is against the
matmul of its own precision: the fp32 matmul, or the bf16 matmul (timed whenever a row
runs in bf16). On CUDA, whether fp32 matmuls may use TF32 is printed beside the floors.

Run it in an environment with SAELens and eai-sparsify installed beside saecore (``nox -s bench``)::

    python benchmarks/train_step_throughput.py --dead-fraction 0.2 --json bench.json
    python benchmarks/train_step_throughput.py --large --json bench-large.json
    python benchmarks/train_step_throughput.py --l0 64 --json bench-l0.json
    python benchmarks/train_step_throughput.py --realistic --device cuda --autocast --arch topk --json gpu.json

``--realistic`` is a Gemma-2-2B residual SAE (d_in 2304, d_sae 65,536, k 64, batch 4096):
a GPU shape, which benchmarks/gpu_check.sh times in fp32 and bf16.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

ARCHITECTURES = ("standard", "gated", "jumprelu", "topk", "batchtopk", "matryoshka_batchtopk")
# The architectures that keep k latents per input (BatchTopK: on average): they take k, and --dead-fraction.
RANKING_ARCHITECTURES = ("topk", "batchtopk", "matryoshka_batchtopk")
# The Matryoshka SAE's inner levels, as fractions of d_sae (d_sae itself is the outer level).
MATRYOSHKA_LEVELS = (1 / 8, 1 / 4, 1 / 2)
IMPLEMENTATIONS = ("saecore", "sae_lens", "sparsify")
# TrainerConfig.optimizer_implementation's values.
OPTIMIZERS = ("auto", "fused", "foreach", "for_loop")
# Settings' on/off switches, as --variant parts and command-line flags (with - for _).
SWITCHES = ("compile", "autocast", "support_route")
FLOOR = "matmul floor"
BF16_FLOOR = "bf16 matmul floor"
MAX_GRAD_NORM = 1.0
LEARNING_RATE = 3e-4
# sparsify's TrainConfig.auxk_alpha default: the weight of its AuxK loss.
SPARSIFY_AUXK_ALPHA = 1 / 32
# The architectures --l0 can put in a sparse state (a threshold on one pre-activation per latent).
L0_ARCHITECTURES = ("standard", "jumprelu", "gated")
# Both libraries' TrainingSAEConfig defaults: decoder rows of this norm, JumpReLU's initial threshold.
DECODER_INIT_NORM = 0.1
JUMPRELU_INIT_THRESHOLD = 0.01
JUMPRELU_BANDWIDTH = 0.05
# FLOP per token of the cheapest possible step, in units of d_in·d_sae.
BOUND_FLOP_UNITS = {"standard": 10, "jumprelu": 10, "gated": 16, "topk": 2, "batchtopk": 2, "matryoshka_batchtopk": 2}
MEMORY_MARKER = "MEMORY_RESULT "
SAELENS_PREFIX = {
    "standard": "Standard",
    "gated": "Gated",
    "jumprelu": "JumpReLU",
    "topk": "TopK",
    "batchtopk": "BatchTopK",
    "matryoshka_batchtopk": "MatryoshkaBatchTopK",
}


@dataclass(frozen=True)
class Shape:
    d_in: int
    d_sae: int
    batch: int
    k: int


@dataclass(frozen=True)
class Case:
    """One row group of the table: an architecture, for TopK how many latents are dead, and the L0 to set."""

    arch: str
    dead_fraction: float = 0.0
    l0: int | None = None

    @property
    def label(self) -> str:
        label = self.arch if self.dead_fraction == 0 else f"{self.arch} {self.dead_fraction:.0%} dead"
        return label if self.l0 is None else f"{label} L0 {self.l0}"


@dataclass(frozen=True)
class Settings:
    """saecore's fast-path switches for one row (TrainerConfig's fields of the same names).

    ``support_route`` is ``accelerator_support_route``. SAELens and sparsify run as their
    own trainers do: torch's default Adam, eager (see ``peer_settings`` for autocast).
    """

    optimizer: str = "auto"
    compile: bool = False
    autocast: bool = False
    support_route: bool = False

    @property
    def spec(self) -> str:
        """The ``--variant`` spelling of these settings ('' for the defaults)."""
        parts = [self.optimizer] if self.optimizer != "auto" else []
        parts += [name for name in SWITCHES if getattr(self, name)]
        return "+".join(parts)

    def flags(self) -> list[str]:
        """Command-line flags that reproduce these settings (for the memory child)."""
        switches = [f"--{name.replace('_', '-')}" for name in SWITCHES if getattr(self, name)]
        return ["--optimizer", self.optimizer, *switches]


def parse_variant(spec: str) -> Settings:
    """``fused+compile`` -> Settings(optimizer="fused", compile=True); unnamed switches at their defaults."""
    values: dict[str, Any] = {}
    for part in spec.split("+"):
        if part in OPTIMIZERS:
            values["optimizer"] = part
        elif part in SWITCHES:
            values[part] = True
        else:
            raise argparse.ArgumentTypeError(
                f"--variant {spec}: unknown part {part!r}; allowed: {', '.join(OPTIMIZERS + SWITCHES)}"
            )
    return Settings(**values)


@dataclass(frozen=True)
class Candidate:
    """One timed row: an implementation, and for saecore the settings it runs with."""

    impl: str
    settings: Settings = Settings()

    @property
    def label(self) -> str:
        spec = self.settings.spec if self.impl == "saecore" else ""
        return f"{self.impl}+{spec}" if spec else self.impl


@dataclass
class Trainable:
    """What a library's trainer does with one batch, up to the optimizer.

    ``loss`` runs the training forward pass and the trainer's per-step firing bookkeeping
    and returns the loss to differentiate; ``before_update`` is any gradient surgery the
    library's trainer applies between ``backward`` and the optimizer; ``optimizer`` is
    the Adam that trainer builds.
    """

    loss: Callable[[], torch.Tensor]
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    before_update: Callable[[], None] | None = None


class TrainingStep:
    """``backward``, clipping, Adam and ``zero_grad`` around a Trainable's loss."""

    def __init__(self, trainable: Trainable) -> None:
        self.trainable = trainable
        self.optimizer = trainable.optimizer

    def __call__(self) -> None:
        loss = self.trainable.loss()
        loss.backward()
        if self.trainable.before_update is not None:
            self.trainable.before_update()
        torch.nn.utils.clip_grad_norm_(self.trainable.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def allocate_optimizer_state(self) -> None:
        """Create Adam's moment buffers with an update of size zero (zero gradients).

        Memory runs call this before taking their baseline, so the optimizer state counts
        as resident, like the parameters, and the step's own allocations are what grows.
        """
        for param in self.trainable.params:
            param.grad = torch.zeros_like(param)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


# -- the implementations -----------------------------------------------------------------
def saecore_trainable(case: Case, shape: Shape, x: torch.Tensor, dead: torch.Tensor, settings: Settings) -> Trainable:
    """As SAETrainer builds its step from TrainerConfig's optimizer_implementation, compile_training_step, autocast
    and accelerator_support_route."""
    from saecore.registry import get_registry
    from saecore.training.compiled_step import compiled_training_step
    from saecore.training.optimizer import build_adam
    from saecore.training_sae import TrainCoefficientConfig, TrainStepInput

    entry = get_registry().training_recipe(case.arch)
    fields = architecture_fields(case, shape, x.device)
    sae = entry.training_sae_class(entry.training_config_class(**fields))
    sae.train()
    if case.l0 is not None:
        load_state(sae, sparse_state(case, shape, x))
    coefficients = {
        name: value.value if isinstance(value, TrainCoefficientConfig) else float(value)
        for name, value in sae.get_coefficients().items()
    }
    # Most steps are not logging steps (the trainer logs every wandb_log_frequency = 30 steps).
    step_input = TrainStepInput(x, coefficients, dead, n_training_steps=0, is_logging_step=False,
                                accelerator_support_route=settings.support_route)
    forward_pass = compiled_training_step(sae.training_forward_pass, x.device, enabled=settings.compile)
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=settings.autocast)
    passes_since_fired = torch.zeros(shape.d_sae, device=x.device)
    firing_totals = torch.zeros(shape.d_sae, device=x.device)

    def loss() -> torch.Tensor:
        with autocast:
            output = forward_pass(step_input)
        with torch.no_grad():  # saecore's FeatureStats.update
            counts = output.latent_firing_counts()
            passes_since_fired.add_(1).masked_fill_(counts > 0, 0)
            firing_totals.add_(counts)
        return output.loss

    params = list(sae.parameters())
    optimizer = build_adam(params, lr=LEARNING_RATE, betas=(0.9, 0.999), implementation=settings.optimizer,
                           device=x.device)
    return Trainable(loss, params, optimizer)


def architecture_fields(case: Case, shape: Shape, device: torch.device) -> dict[str, Any]:
    """The config fields both libraries are given: the shape, and k and the nested levels where the recipe has them."""
    fields: dict[str, Any] = {"d_in": shape.d_in, "d_sae": shape.d_sae, "device": str(device)}
    if case.arch in RANKING_ARCHITECTURES:
        fields["k"] = shape.k
    if case.arch == "matryoshka_batchtopk":
        fields["matryoshka_widths"] = [round(level * shape.d_sae) for level in MATRYOSHKA_LEVELS] + [shape.d_sae]
    return fields


def saelens_trainable(case: Case, shape: Shape, x: torch.Tensor, dead: torch.Tensor, settings: Settings) -> Trainable:
    import sae_lens
    from sae_lens.saes.sae import TrainCoefficientConfig, TrainStepInput

    prefix = SAELENS_PREFIX[case.arch]
    fields = architecture_fields(case, shape, x.device)
    sae = getattr(sae_lens, f"{prefix}TrainingSAE")(getattr(sae_lens, f"{prefix}TrainingSAEConfig")(**fields))
    sae.train()
    if case.l0 is not None:
        load_state(sae, sparse_state(case, shape, x))
    coefficients = {
        name: value.value if isinstance(value, TrainCoefficientConfig) else float(value)
        for name, value in sae.get_coefficients().items()
    }
    step_input = TrainStepInput(
        sae_in=x, coefficients=coefficients, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False
    )
    passes_since_fired = torch.zeros(shape.d_sae, device=x.device)
    firing_totals = torch.zeros(shape.d_sae, device=x.device)
    autocast = torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=settings.autocast)  # SAETrainer's

    def loss() -> torch.Tensor:
        with autocast:
            output = sae.training_forward_pass(step_input)
        with torch.no_grad():  # what SAELens's SAETrainer._train_step does with the output
            firing = output.feature_acts.bool().float()
            did_fire = firing.sum(-2).bool()
            passes_since_fired.add_(1)
            passes_since_fired[did_fire] = 0
            firing_totals.add_(firing.sum(0))
        return output.loss

    params = list(sae.parameters())
    return Trainable(loss, params, torch.optim.Adam(params, lr=LEARNING_RATE))


@torch.no_grad()
def record_sparsify_firing(tokens_since_fired: torch.Tensor, latent_indices: torch.Tensor, n_tokens: int) -> None:
    """What sparsify's Trainer does with each step's output: count tokens since each latent last fired."""
    did_fire = torch.zeros_like(tokens_since_fired, dtype=torch.bool)
    did_fire[latent_indices.flatten()] = True
    tokens_since_fired.add_(n_tokens)
    tokens_since_fired[did_fire] = 0


def import_sparsify(device: torch.device) -> str:
    """Import sparsify, without its Triton decoder on CPU (it needs CUDA); what it printed about its decoder."""
    if device.type == "cpu":
        os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
    with contextlib.redirect_stdout(io.StringIO()) as said:  # it prints which decoder kernel it picked
        import sparsify  # noqa: F401
    return said.getvalue().strip()


def sparsify_trainable(case: Case, shape: Shape, x: torch.Tensor, dead: torch.Tensor, settings: Settings) -> Trainable:
    import_sparsify(x.device)
    from sparsify import SparseCoder, SparseCoderConfig

    sae = SparseCoder(shape.d_in, SparseCoderConfig(num_latents=shape.d_sae, k=shape.k), device=x.device)
    tokens_since_fired = torch.zeros(shape.d_sae, dtype=torch.long, device=x.device)

    def loss() -> torch.Tensor:
        sae.set_decoder_norm_to_unit_norm()
        output = sae(x, dead_mask=dead)
        record_sparsify_firing(tokens_since_fired, output.latent_indices, x.shape[0])
        return output.fvu + SPARSIFY_AUXK_ALPHA * output.auxk_loss

    params = list(sae.parameters())
    return Trainable(
        loss, params, torch.optim.Adam(params, lr=LEARNING_RATE), sae.remove_gradient_parallel_to_decoder_directions
    )


def sparsify_kernels(device: torch.device) -> dict[str, Any]:
    """Which decoder sparsify picked (its Triton kernel or eager torch), and whether its forward runs in bf16."""
    note = import_sparsify(device)
    import sparsify.utils

    decoder = "triton" if sparsify.utils.decoder_impl.__name__ == "triton_decode" else "eager"
    return {
        "decoder": decoder,
        "decoder_note": note,
        "triton_importable": importlib.util.find_spec("triton") is not None,
        "forward_bf16_autocast": device.type == "cuda" and torch.cuda.is_bf16_supported(),
    }


def row_precision(candidate: Candidate, device: torch.device) -> str:
    """``bf16`` when the row's matmuls run under bfloat16 autocast, else ``fp32``."""
    if candidate.impl == "sparsify":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if candidate.settings.autocast else "fp32"


def peer_settings(impl: str, settings: Settings) -> Settings:
    """SAELens runs under autocast when saecore does (its trainer has the switch); sparsify has no switches."""
    return Settings(autocast=settings.autocast) if impl == "sae_lens" else Settings()


BUILDERS: dict[str, Callable[[Case, Shape, torch.Tensor, torch.Tensor, Settings], Trainable]] = {
    "saecore": saecore_trainable,
    "sae_lens": saelens_trainable,
    "sparsify": sparsify_trainable,
}


def saecore_has(arch: str) -> bool:
    from saecore.registry import get_registry

    return arch in get_registry().training_recipes


def available(impl: str, arch: str) -> bool:
    """Whether ``impl`` is installed here and implements ``arch``."""
    if impl == "saecore":
        return importlib.util.find_spec("saecore") is not None and saecore_has(arch)
    if impl == "sae_lens":
        return importlib.util.find_spec("sae_lens") is not None
    return arch == "topk" and importlib.util.find_spec("sparsify") is not None


def fixed_inputs(case: Case, shape: Shape, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The reused batch and the dead-latent mask (the same seeded latents for every implementation)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape.batch, shape.d_in, generator=generator).to(device)
    dead = torch.zeros(shape.d_sae, dtype=torch.bool)
    n_dead = round(case.dead_fraction * shape.d_sae)
    dead[torch.randperm(shape.d_sae, generator=generator)[:n_dead]] = True
    return x, dead.to(device)


def sparse_state(case: Case, shape: Shape, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weights under which about ``case.l0`` latents are active per input of ``x``, for any implementation.

    A seeded random decoder with rows of the default norm, the encoder its transpose, a
    zero ``b_dec`` (both libraries' initialisation), and per latent ``b_enc = θ − v``, where
    ``v`` is the pre-activation ``(x W_enc)_i`` that exactly ``l0·B/d_sae`` inputs exceed:
    ``h_i > θ_i`` on those inputs only, which is ``l0`` active latents per input on average.
    Gated takes that bias as ``b_gate`` (threshold 0) and as ``b_mag`` too: with ``r_mag = 0``
    the magnitude equals ``π``, positive wherever the gate is open.
    """
    assert case.l0 is not None
    generator = torch.Generator().manual_seed(2)
    W_dec = torch.randn(shape.d_sae, shape.d_in, generator=generator)
    W_dec *= DECODER_INIT_NORM / W_dec.norm(dim=1, keepdim=True)
    W_enc = W_dec.T.contiguous()
    threshold = torch.full((shape.d_sae,), JUMPRELU_INIT_THRESHOLD if case.arch == "jumprelu" else 0.0)
    scores = x.cpu().float() @ W_enc
    n_active = round(case.l0 * shape.batch / shape.d_sae)
    exceeded = scores.kthvalue(shape.batch - n_active, dim=0).values
    bias = threshold - exceeded
    state = {"W_dec": W_dec, "W_enc": W_enc, "b_dec": torch.zeros(shape.d_in)}
    if case.arch == "gated":
        state.update(b_gate=bias, b_mag=bias.clone(), r_mag=torch.zeros(shape.d_sae))
    else:
        state["b_enc"] = bias
    if case.arch == "jumprelu":
        state["threshold"] = threshold
    return state


@torch.no_grad()
def load_state(sae: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for name, value in state.items():
        param = getattr(sae, name)
        param.copy_(value.to(device=param.device, dtype=param.dtype))


def sparsity_of_state(case: Case, shape: Shape, x: torch.Tensor) -> dict[str, float]:
    """The state's L0 on the batch, and for JumpReLU the density of the entries its estimators reach."""
    state = sparse_state(case, shape, x)
    hidden_pre = x.cpu().float() @ state["W_enc"] + state["b_gate" if case.arch == "gated" else "b_enc"]
    threshold = state.get("threshold", torch.zeros(shape.d_sae))
    facts = {"l0": float((hidden_pre > threshold).sum(-1).float().mean())}
    if case.arch == "jumprelu":
        reached = (hidden_pre - threshold) / JUMPRELU_BANDWIDTH > -0.5
        facts["ste_support_density"] = float(reached.float().mean())
    return facts


def matmul_floor(shape: Shape, device: torch.device, dtype: torch.dtype = torch.float32) -> Callable[[], None]:
    """The encoder-sized matmul in ``dtype`` into a preallocated output: the BLAS speed, nothing else."""
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(shape.batch, shape.d_in, generator=generator).to(device, dtype)
    w = torch.randn(shape.d_in, shape.d_sae, generator=generator).to(device, dtype)
    out = torch.empty(shape.batch, shape.d_sae, device=device, dtype=dtype)

    def step() -> None:
        torch.mm(a, w, out=out)

    return step


# -- timing ----------------------------------------------------------------------------------
def synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


@dataclass
class Timings:
    """Per candidate, each timed step's wall-clock seconds and the process CPU seconds it used.

    CPU seconds count the work of every thread (and OpenMP spin-waits); on a loaded
    machine they move far less than wall-clock time, so they help read a noisy run.
    ``first`` is the wall-clock time of each candidate's first (untimed) step, which
    includes torch.compile's compilation where it is on.
    """

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    first: dict[str, float] = field(default_factory=dict)


def time_interleaved(
    steps: dict[str, Callable[[], None]], warmup: int, repeats: int, sync: Callable[[], None]
) -> Timings:
    """Time each round's step per candidate; the candidates take turns in a rotating order."""
    names = list(steps)
    timings = Timings({name: [] for name in names}, {name: [] for name in names})
    for name, step in steps.items():
        for index in range(warmup):
            start = time.perf_counter()
            step()
            sync()
            if index == 0:
                timings.first[name] = time.perf_counter() - start
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[name]()
            sync()
            timings.wall[name].append(time.perf_counter() - start)
            timings.cpu[name].append(time.process_time() - start_cpu)
    return timings


@dataclass
class Row:
    case: str
    arch: str
    impl: str
    seconds: list[float]
    cpu_seconds: list[float]
    tok_s_best: float
    tok_s_median: float
    first_step_seconds: float | None = None
    ratio_to_sae_lens: float | None = None
    ratio_to_sae_lens_best: float | None = None
    ratio_to_sparsify: float | None = None
    ratio_to_sparsify_best: float | None = None
    ratio_to_saecore: float | None = None
    ratio_to_saecore_best: float | None = None
    floor_fraction: float | None = None
    floor_fraction_best: float | None = None
    precision: str = "fp32"
    peak_memory_bytes: int | None = None
    memory: dict[str, Any] = field(default_factory=dict)


def paired_ratio(reference: Sequence[float], candidate: Sequence[float]) -> float:
    """Median over rounds of ``reference / candidate`` step time: >1 means the candidate is faster."""
    return statistics.median(r / c for r, c in zip(reference, candidate))


def rows_of_case(
    case: Case, shape: Shape, timings: Timings, saecore_label: str, precisions: dict[str, str]
) -> list[Row]:
    """One row per candidate; ``x saecore`` compares saecore's variants with the ``saecore_label`` row.

    ``precisions`` gives each candidate's ``fp32`` or ``bf16``: its floor is that matmul's.
    """
    times = timings.wall
    half_units = BOUND_FLOP_UNITS[case.arch] / 2  # bound tok/s ÷ step tok/s = (units/2) · t_matmul / t_step
    rows = []
    for impl, seconds in times.items():
        if impl in (FLOOR, BF16_FLOOR):
            continue
        floor = times[BF16_FLOOR if precisions[impl] == "bf16" else FLOOR]
        row = Row(
            case=case.label,
            arch=case.arch,
            impl=impl,
            seconds=seconds,
            cpu_seconds=timings.cpu[impl],
            first_step_seconds=timings.first.get(impl),
            tok_s_best=shape.batch / min(seconds),
            tok_s_median=shape.batch / statistics.median(seconds),
            floor_fraction=half_units * paired_ratio(floor, seconds),
            floor_fraction_best=half_units * min(floor) / min(seconds),
            precision=precisions[impl],
        )
        for peer, label in (("sae_lens", "sae_lens"), ("sparsify", "sparsify"), ("saecore", saecore_label)):
            if label in times and label != impl and (peer != "saecore" or impl.startswith("saecore")):
                setattr(row, f"ratio_to_{peer}", paired_ratio(times[label], seconds))
                setattr(row, f"ratio_to_{peer}_best", min(times[label]) / min(seconds))
        rows.append(row)
    return rows


def print_profile(label: str, step: Callable[[], None], row_limit: int) -> None:
    """Where one (already warm) step spends its time, by operator, most self time first."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as profiler:
        step()
    sort_by = "self_cuda_time_total" if len(activities) > 1 else "self_cpu_time_total"
    print(f"\n-- profile of one step: {label}")
    print(profiler.key_averages().table(sort_by=sort_by, row_limit=row_limit, max_name_column_width=48))


# -- memory (one fresh process per measurement) ---------------------------------------------
def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key} line")


def _reset_peak_rss() -> bool:
    """Make the kernel's high-water mark (hence ru_maxrss) restart from the current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def measure_memory(case: Case, shape: Shape, candidate: Candidate, device: torch.device, steps: int) -> dict:
    """Peak memory a training step adds to resident parameters, Adam state and the batch."""
    x, dead = fixed_inputs(case, shape, device)
    return peak_step_memory(TrainingStep(BUILDERS[candidate.impl](case, shape, x, dead, candidate.settings)),
                            device, steps)


def peak_step_memory(step: Any, device: torch.device, steps: int) -> dict:
    """Peak memory ``steps`` calls of ``step`` add once its optimizer state is allocated."""
    step.allocate_optimizer_state()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - baseline, "method": "cuda max_memory_allocated"}
    reset = _reset_peak_rss()
    baseline_kib = _status_kib("VmRSS")
    for _ in range(steps):
        step()
    if reset:
        # Not ru_maxrss: it also holds the high-water mark of the forked copy of the parent
        # this process was before exec, which clear_refs cannot reset.
        peak_kib, method = _status_kib("VmHWM"), "VmHWM after clear_refs"
    else:
        peak_kib, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss (upper bound)"
    return {"peak_bytes": (peak_kib - baseline_kib) * 1024, "method": method, "baseline_bytes": baseline_kib * 1024}


def memory_in_subprocess(args: argparse.Namespace, case: Case, shape: Shape, candidate: Candidate) -> dict:
    command = [
        sys.executable, os.path.abspath(__file__), "--memory-child", candidate.impl, "--arch", case.arch,
        "--dead-fraction", str(case.dead_fraction), "--d-in", str(shape.d_in), "--d-sae", str(shape.d_sae),
        *(["--l0", str(case.l0)] if case.l0 is not None else []),
        "--batch", str(shape.batch), "--k", str(shape.k), "--threads", str(args.threads),
        "--device", args.device, *candidate.settings.flags(),
    ]
    # Every allocation above 64 KiB gets its own mapping, returned to the OS when freed, so the
    # resident set follows what is live, whatever allocator settings the timed run used.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MEMORY_MARKER):
            return json.loads(line.removeprefix(MEMORY_MARKER))
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}


# -- reporting ---------------------------------------------------------------------------------
def _ratio(value: float | None, best: float | None) -> str:
    return "" if value is None or best is None else f"{value:.2f} ({best:.2f})"


def print_table(rows: list[Row], floor: dict[str, float], bounds: dict[str, dict[str, Any]], shape: Shape) -> None:
    print(
        f"\nfp32 matmul floor: {floor['gflops_best']:.1f} GFLOP/s best, {floor['gflops_median']:.1f} median "
        f"-> dense bound {floor['dense_bound_tok_s']:.0f} tok/s (10·d_in·d_sae FLOP/token), "
        f"sparse TopK bound {floor['sparse_bound_tok_s']:.0f} tok/s (2·d_in·d_sae)"
    )
    if "bf16_gflops_best" in floor:
        print(f"bf16 matmul floor: {floor['bf16_gflops_best']:.1f} GFLOP/s best, "
              f"{floor['bf16_gflops_median']:.1f} median (the floor of the rows marked bf16)")
    headers = ("case", "impl", "tok/s best", "tok/s median", "x SAELens", "x sparsify", "x saecore", "of floor",
               "precision", "peak MiB")
    widths = (max(16, *(len(row.case) for row in rows)), max(9, *(len(row.impl) for row in rows)), 11, 12, 13, 13, 13,
              13, 9, 9)
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    shown_bounds = set()
    for row in rows:
        if row.case not in shown_bounds:
            shown_bounds.add(row.case)
            bound = bounds[row.case]
            print(f"{row.case:<{widths[0]}}  {'bound':<{widths[1]}}  {bound['tok_s_best']:>11.0f}  "
                  f"{bound['tok_s_median']:>12.0f}  "
                  f"(matmul {bound['gflops_best']:.1f} GFLOP/s best, {bound['gflops_median']:.1f} median)")
        memory = "" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**20:.0f}"
        cells = (
            row.case, row.impl, f"{row.tok_s_best:.0f}", f"{row.tok_s_median:.0f}",
            _ratio(row.ratio_to_sae_lens, row.ratio_to_sae_lens_best),
            _ratio(row.ratio_to_sparsify, row.ratio_to_sparsify_best),
            _ratio(row.ratio_to_saecore, row.ratio_to_saecore_best),
            _ratio(row.floor_fraction, row.floor_fraction_best), row.precision, memory,
        )
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    print(
        "ratios: median over rounds of back-to-back step-time ratios (best-of-N / best-of-N in brackets); "
        f"'of floor' against {', '.join(f'{a} {u}' for a, u in BOUND_FLOP_UNITS.items())} ·d_in·d_sae FLOP/token; "
        f"shape d_in={shape.d_in} d_sae={shape.d_sae} batch={shape.batch} k={shape.k}"
    )


def case_bound(case: Case, shape: Shape, floor_seconds: Sequence[float]) -> dict[str, Any]:
    """The matmul speed while this case ran, and the tok/s bound it gives the architecture."""
    flop = 2 * shape.batch * shape.d_in * shape.d_sae
    flop_per_token = BOUND_FLOP_UNITS[case.arch] * shape.d_in * shape.d_sae
    best, median = flop / min(floor_seconds), flop / statistics.median(floor_seconds)
    return {
        "gflops_best": best / 1e9,
        "gflops_median": median / 1e9,
        "tok_s_best": best / flop_per_token,
        "tok_s_median": median / flop_per_token,
        "matmul_seconds": list(floor_seconds),
    }


def floor_summary(all_times: list[dict[str, list[float]]], shape: Shape) -> dict[str, float]:
    seconds = [t for times in all_times for t in times[FLOOR]]
    flop = 2 * shape.batch * shape.d_in * shape.d_sae
    best = flop / min(seconds) / 1e9
    summary = {
        "gflops_best": best,
        "gflops_median": flop / statistics.median(seconds) / 1e9,
        "dense_bound_tok_s": best * 1e9 / (10 * shape.d_in * shape.d_sae),
        "sparse_bound_tok_s": best * 1e9 / (2 * shape.d_in * shape.d_sae),
    }
    bf16_seconds = [t for times in all_times for t in times.get(BF16_FLOOR, [])]
    if bf16_seconds:
        summary["bf16_gflops_best"] = flop / min(bf16_seconds) / 1e9
        summary["bf16_gflops_median"] = flop / statistics.median(bf16_seconds) / 1e9
    return summary


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_facts(device: torch.device, threads: int) -> dict[str, Any]:
    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    facts: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
        "versions": {name: _version(name) for name in ("saecore", "sae-lens", "eai-sparsify")},
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"},
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
        facts["cuda_fp32_matmul_allows_tf32"] = torch.backends.cuda.matmul.allow_tf32
    return facts


# -- entry point ---------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--large", action="store_true", help="d_in 768, d_sae 24576, k 64 (default 512, 4096, 32)")
    sizes.add_argument("--realistic", action="store_true",
                       help="d_in 2304, d_sae 65536, k 64, batch 4096: a GPU shape (with --device cuda)")
    parser.add_argument("--d-in", type=int)
    parser.add_argument("--d-sae", type=int)
    parser.add_argument("--k", type=int)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES, help="repeat to pick several (default all)")
    parser.add_argument("--impl", action="append", choices=IMPLEMENTATIONS, help="repeat to pick several (default all)")
    parser.add_argument("--dead-fraction", type=float, default=0.0,
                        help="also time topk, batchtopk and matryoshka_batchtopk with this fraction of latents "
                        "dead (AuxK active), e.g. 0.2")
    parser.add_argument("--l0", type=int, help="start standard, JumpReLU and gated (every implementation) from the "
                        "same weights with about this many active latents per input (default: their initial state)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="auto",
                        help="saecore's Adam (TrainerConfig.optimizer_implementation); the others use torch's default")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile saecore's training forward pass (TrainerConfig.compile_training_step)")
    parser.add_argument("--autocast", action="store_true",
                        help="saecore's forward pass under bfloat16 autocast (TrainerConfig.autocast), and SAELens's "
                        "(its trainer's autocast)")
    parser.add_argument("--support-route", action="store_true",
                        help="let saecore's BatchTopK and Matryoshka steps take the support route off the CPU "
                        "(TrainerConfig.accelerator_support_route)")
    parser.add_argument("--variant", action="append", type=parse_variant, default=[], metavar="SPEC",
                        help="also time saecore with these settings, interleaved with the rest, e.g. 'fused', "
                        "'compile', 'for_loop+autocast', 'support_route' (repeatable; column 'x saecore' compares "
                        "with the saecore row)")
    parser.add_argument("--tune-malloc", action="store_true",
                        help="apply saecore's glibc malloc tuning (TrainerConfig.tune_malloc) to this whole process, "
                        "so to every library; compare runs with and without it")
    parser.add_argument("--warmup", type=int, help="untimed steps per implementation (default 2, --large and "
                        "--realistic 1)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 7, --large and --realistic 3)")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps per memory measurement")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-step peak memory runs")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="after timing each case, print this many rows of a torch.profiler table per step")
    parser.add_argument("--json", help="write every number (and the step times) here")
    parser.add_argument("--memory-child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sized = {"d_in": 512, "d_sae": 4096, "k": 32}
    if args.large:
        sized = {"d_in": 768, "d_sae": 24576, "k": 64}
    if args.realistic:
        sized = {"d_in": 2304, "d_sae": 65536, "k": 64}
    for name, value in sized.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    big = args.large or args.realistic
    if args.warmup is None:
        args.warmup = 1 if big else 2
    if args.repeats is None:
        args.repeats = 3 if big else 7
    if not 0 <= args.dead_fraction < 1:
        parser.error(f"--dead-fraction {args.dead_fraction}: allowed 0 <= fraction < 1")
    if args.l0 is not None:
        if not 0 < args.l0 * args.batch / args.d_sae < args.batch:
            parser.error(f"--l0 {args.l0}: allowed 0 < l0 < d_sae={args.d_sae}, with l0·batch/d_sae >= 1")
        if args.arch is None:
            args.arch = list(L0_ARCHITECTURES)
        elif not set(args.arch) <= set(L0_ARCHITECTURES):
            parser.error(f"--l0 applies to {', '.join(L0_ARCHITECTURES)}; got --arch {', '.join(args.arch)}")
    return args


def cases_of(args: argparse.Namespace) -> list[Case]:
    cases = [Case(arch, l0=args.l0) for arch in (args.arch or ARCHITECTURES)]
    if args.dead_fraction > 0:
        cases += [Case(case.arch, args.dead_fraction) for case in list(cases) if case.arch in RANKING_ARCHITECTURES]
    return cases


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = Shape(args.d_in, args.d_sae, args.batch, args.k)
    settings = Settings(args.optimizer, args.compile, args.autocast, args.support_route)
    if args.memory_child is not None:
        case = Case(args.arch[0], args.dead_fraction, args.l0)
        candidate = Candidate(args.memory_child, settings)
        result = measure_memory(case, shape, candidate, device, args.memory_steps)
        print(MEMORY_MARKER + json.dumps(result))
        return

    facts = machine_facts(device, args.threads)
    print(f"{facts['cpu']} ({facts['cpu_count']} CPUs), {device}, torch {facts['torch']}, {args.threads} threads, "
          f"load {facts['load_average_at_start']}, {facts['versions']}")
    if args.tune_malloc:
        from saecore.training.allocator import tune_malloc

        tuning = tune_malloc(device)
        facts["malloc_tuning"] = asdict(tuning)
        print(f"malloc tuning {'applied' if tuning.applied else 'not applied'}: {tuning.reason}")
    candidates: dict[str, Candidate] = {}
    sync = synchronizer(device)
    rows: list[Row] = []
    all_times: list[dict[str, list[float]]] = []
    bounds: dict[str, dict[str, Any]] = {}
    cases = {case.label: case for case in cases_of(args)}
    sparsity: dict[str, dict[str, float]] = {}
    for case in cases.values():
        x, dead = fixed_inputs(case, shape, device)
        if case.l0 is not None:
            sparsity[case.label] = sparsity_of_state(case, shape, x)
            print(f"{case.label}: start state {sparsity[case.label]}", flush=True)
        steps: dict[str, Callable[[], None]] = {}
        precisions: dict[str, str] = {}
        for impl in args.impl or IMPLEMENTATIONS:
            if not available(impl, case.arch):
                continue
            if impl == "sparsify" and "sparsify" not in facts:
                facts["sparsify"] = sparsify_kernels(device)
                print(f"sparsify: {facts['sparsify']}", flush=True)
            impl_settings = [settings, *args.variant] if impl == "saecore" else [peer_settings(impl, settings)]
            for candidate_settings in impl_settings:
                candidate = Candidate(impl, candidate_settings)
                candidates[candidate.label] = candidate
                precisions[candidate.label] = row_precision(candidate, device)
                steps[candidate.label] = TrainingStep(BUILDERS[impl](case, shape, x, dead, candidate_settings))
        steps[FLOOR] = matmul_floor(shape, device)
        if "bf16" in precisions.values():
            steps[BF16_FLOOR] = matmul_floor(shape, device, torch.bfloat16)
        timings = time_interleaved(steps, args.warmup, args.repeats, sync)
        all_times.append(timings.wall)
        case_rows = rows_of_case(case, shape, timings, Candidate("saecore", settings).label, precisions)
        bounds[case.label] = case_bound(case, shape, timings.wall[FLOOR])
        if device.type == "cuda" and not args.no_memory:
            for row in case_rows:
                row.memory = peak_step_memory(steps[row.impl], device, args.memory_steps)
                row.peak_memory_bytes = row.memory["peak_bytes"]
        rows.extend(case_rows)
        summary = ", ".join(
            f"{row.impl} {row.tok_s_best:.0f} ({statistics.median(row.cpu_seconds):.2f} CPU s/step"
            + (f", first step {row.first_step_seconds:.1f} s)" if row.first_step_seconds is not None else ")")
            for row in case_rows
        )
        print(f"{case.label}: best tok/s {summary}", flush=True)
        if args.profile:
            for impl, step in steps.items():
                if impl != FLOOR:
                    print_profile(f"{case.label}, {impl}", step, args.profile)
        del steps
        gc.collect()
    if not args.no_memory and device.type != "cuda":
        for row in rows:
            row.memory = memory_in_subprocess(args, cases[row.case], shape, candidates[row.impl])
            row.peak_memory_bytes = row.memory.get("peak_bytes")
    floor = floor_summary(all_times, shape)
    print_table(rows, floor, bounds, shape)
    if args.json:
        facts["load_average_at_end"] = os.getloadavg()
        result = {
            "command": [sys.executable, *sys.argv],
            "machine": facts,
            "shape": asdict(shape),
            "settings": {
                **{k: getattr(args, k) for k in ("threads", "device", "optimizer", "compile", "autocast", "tune_malloc",
                                                 "warmup", "repeats", "dead_fraction", "memory_steps", "l0",
                                                 "realistic", "support_route")},
                "variants": [variant.spec for variant in args.variant],
            },
            "floor": floor,
            "bounds": bounds,
            "start_sparsity": sparsity,
            "dense_preactivation_bytes": 4 * shape.batch * shape.d_sae,
            "rows": [asdict(row) for row in rows],
        }
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
