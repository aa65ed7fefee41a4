"""Throughput benchmark: training a standard SAE on a language model's activations, end to end.

The model is a random 2-layer transformer (d_head 64, d_mlp 4·d_model, n_ctx 128, GPT-2's
vocabulary size) hooked at ``blocks.1.hook_resid_post``; the data are random pretokenized
rows of 128 tokens; the SAE is a standard SAE with d_sae 4096 trained on batches of 4096
tokens, with a 16,384-token mixing buffer. For each d_model it measures, each case in a
fresh process (so peak RSS belongs to that case alone):

* ``e2e``: ``LanguageModelSAETrainingRunner.run()`` — tokens/s of the training loop, and of
  the whole call (buffer fills, final evaluation and all);
* ``e2e+overlap``: the same with ``prefetch_llm_batches=True`` (the model runs in a
  background thread while the SAE trains);
* ``store``: the source alone, ``source.next_batch(4096)`` after the buffer is filled;
* ``sae step``: the trainer alone, on batches already in memory;
* with SAELens importable in the same environment (``nox -s bench_llm`` builds one):
  SAELens 6's runner, its ``ActivationsStore`` and its trainer alone, on the same model,
  data and settings.

Columns: ``loop tok/s`` (wall: the training loop, the served batches, or the trainer
alone), ``run tok/s`` (wall: the whole ``run()`` call, model and data passed in), ``CPU
s/step`` (CPU seconds of all the process's threads per 4096-token step: the work done,
which a busy shared machine disturbs far less than wall time), ``sys s/step`` and
``faults/step`` (system CPU seconds and minor page faults per step: what fresh memory
costs, whatever the load) and ``peak RSS MB``. For saecore's end-to-end cases a second
table gives the peak RSS reached by the end of each phase (set-up, first step with the
buffer's fill, the other steps, the final evaluation). With ``--repeat`` the cases run
interleaved and the median is shown (the largest peak RSS).

::

    nox -s bench_llm -- [--d-model 128 --d-model 512] [--steps 12] [--repeat 3] [--no-tune-malloc] [--json out.json]
    python benchmarks/llm_end_to_end.py [...]      # in an environment that already has saecore-source-llm

The model is a transformer-lens 3.x ``HookedTransformer`` where installed (what SAELens
runs), else a transformer-lens 4 ``TransformerBridge`` built with ``boot_native``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from importlib.util import find_spec
from typing import Any

CONTEXT = 128
BATCH = 4096
D_SAE = 4096
STORE_PROMPTS = 32
BUFFER_TOKENS = 16_384
HOOK = "blocks.1.hook_resid_post"
VOCAB = 50_257
CASES = ("e2e", "e2e+overlap", "store", "sae step")
SAELENS_CASES = ("saelens e2e", "saelens store", "saelens sae step")


# -- the shared model and data ------------------------------------------------------------------
def build_model(d_model: int, n_layers: int = 2) -> Any:
    """A random transformer (2 layers unless told) in the installed transformer-lens generation."""
    import torch

    torch.manual_seed(0)
    shape = {"n_layers": n_layers, "d_model": d_model, "d_head": 64, "n_heads": d_model // 64, "d_mlp": 4 * d_model,
             "n_ctx": CONTEXT, "d_vocab": VOCAB, "act_fn": "gelu"}
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        return TransformerBridge.boot_native(TransformerBridgeConfig(**shape, normalization_type="LN"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer(HookedTransformerConfig(**shape, normalization_type="LN", seed=0)).eval()


def build_dataset(n_tokens: int) -> Any:
    import torch
    from datasets import Dataset

    rows = n_tokens // CONTEXT + 64
    tokens = torch.randint(1, VOCAB, (rows, CONTEXT), generator=torch.Generator().manual_seed(0))
    return Dataset.from_dict({"tokens": tokens.tolist()})


class Clock:
    """Wall and CPU seconds (all threads of this process) and page faults between ``start()`` and ``stop()``.

    CPU seconds per step measure the work done, which on a shared machine is far steadier
    than wall time; the overlap shows only in wall time. Minor page faults and system CPU
    seconds per step are what the allocator costs: each large tensor served by a fresh
    ``mmap`` is faulted in and zero-filled page by page, which a busy machine does not change.
    """

    def __init__(self) -> None:
        self.wall = self.cpu = self.system = 0.0
        self.faults = 0
        self._started: tuple[float, float, float, int] = (0.0, 0.0, 0.0, 0)

    def start(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._started = (time.perf_counter(), time.process_time(), usage.ru_stime, usage.ru_minflt)

    def stop(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.wall = time.perf_counter() - self._started[0]
        self.cpu = time.process_time() - self._started[1]
        self.system = usage.ru_stime - self._started[2]
        self.faults = usage.ru_minflt - self._started[3]

    def rates(self, steps: int) -> dict[str, float]:
        return {"tokens_per_s": steps * BATCH / self.wall, "cpu_s_per_step": self.cpu / steps,
                "sys_s_per_step": self.system / steps, "faults_per_step": self.faults / steps}


def clock_saecore_loop(clock: Clock, phase_peaks: dict[str, float] | None = None) -> None:
    """Time saecore's training loop: from ``begin_fit()`` to its final evaluation (``_finish``).

    ``begin_fit`` is where both ``SAETrainer.fit`` and the runners' sweep loop start the loop.
    With ``phase_peaks`` it also records the peak RSS reached by the end of each phase: the
    set-up (imports, model, data), the first step (which fills the buffer), the other steps.
    """
    from saecore.training.trainer import SAETrainer

    begin_fit, run_step, finish = SAETrainer.begin_fit, SAETrainer.run_step, SAETrainer._finish
    peaks = phase_peaks if phase_peaks is not None else {}

    def timed_begin_fit(self: Any, **options: Any) -> None:
        peaks["set-up"] = peak_rss_mb()
        clock.start()
        begin_fit(self, **options)

    def traced_run_step(self: Any, stop: Any) -> None:
        run_step(self, stop)
        if self.n_training_steps == 1:
            peaks["first step"] = peak_rss_mb()

    def timed_finish(self: Any) -> None:
        clock.stop()
        peaks["other steps"] = peak_rss_mb()
        finish(self)

    SAETrainer.begin_fit, SAETrainer._finish = timed_begin_fit, timed_finish  # type: ignore[method-assign]
    SAETrainer.run_step = traced_run_step  # type: ignore[method-assign]


def tune_malloc() -> bool:
    """saecore's glibc malloc tuning, as ``saecore train`` runs: on unless ``--no-tune-malloc`` was given."""
    return not os.environ.get("_LLM_BENCH_NO_TUNE_MALLOC")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- saecore -------------------------------------------------------------------------------------
def saecore_runner_config(d_model: int, training_tokens: int, overlap: bool) -> Any:
    from saecore import LanguageModelSAERunnerConfig, LoggingConfig, StandardTrainingSAEConfig

    return LanguageModelSAERunnerConfig(
        sae=StandardTrainingSAEConfig(d_in=d_model, d_sae=D_SAE), hook_name=HOOK, context_size=CONTEXT,
        prepend_bos=False, store_batch_size_prompts=STORE_PROMPTS,
        n_batches_in_buffer=BUFFER_TOKENS // (STORE_PROMPTS * CONTEXT), train_batch_size_tokens=BATCH,
        training_tokens=training_tokens, output_path=None, verbose=False, n_eval_batches=1,
        eval_batch_size_prompts=8, prefetch_llm_batches=overlap, logger=LoggingConfig(log_to_wandb=False),
        tune_malloc=tune_malloc(),
    )


def saecore_e2e(d_model: int, steps: int, overlap: bool) -> dict[str, Any]:
    from saecore import LanguageModelSAETrainingRunner

    clock = Clock()
    phase_peaks: dict[str, float] = {}
    clock_saecore_loop(clock, phase_peaks)
    cfg = saecore_runner_config(d_model, steps * BATCH, overlap)
    model, dataset = build_model(d_model), build_dataset(steps * BATCH * 2)
    started = time.perf_counter()
    LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=dataset).run()
    wall = time.perf_counter() - started
    phase_peaks["final evaluation"] = peak_rss_mb()
    return {**clock.rates(steps), "run_tokens_per_s": steps * BATCH / wall, "phase_peak_rss_mb": phase_peaks}


def saecore_store(d_model: int, steps: int) -> dict[str, Any]:
    from saecore_source_llm import LLMSource

    cfg = saecore_runner_config(d_model, steps * BATCH, overlap=False)
    source = LLMSource(cfg.source_config(model=build_model(d_model), dataset=build_dataset(steps * BATCH * 2)))
    return served(lambda: source.next_batch(BATCH), steps)


def saecore_sae_step(d_model: int, steps: int) -> dict[str, Any]:
    import torch

    from saecore import StandardTrainingSAE, StandardTrainingSAEConfig
    from saecore.sources.in_memory import TensorSource, TensorSourceConfig
    from saecore.training import SAETrainer, TrainerConfig

    data = torch.randn(4 * BATCH, d_model, generator=torch.Generator().manual_seed(0))
    source = TensorSource(TensorSourceConfig(data=data, shuffle=False))
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=d_model, d_sae=D_SAE))
    cfg = TrainerConfig(training_tokens=steps * BATCH, train_batch_size_tokens=BATCH, n_eval_batches=1,
                        output_path=None, verbose=False, tune_malloc=tune_malloc())
    clock = Clock()
    clock_saecore_loop(clock)
    SAETrainer(cfg, sae, source).fit()
    return clock.rates(steps)


def served(next_batch: Any, steps: int) -> dict[str, float]:
    """Rates of ``steps`` batches after the buffer's first fill."""
    for _ in range(2):
        next_batch()
    clock = Clock()
    clock.start()
    for _ in range(steps):
        next_batch()
    clock.stop()
    return clock.rates(steps)


# -- SAELens ---------------------------------------------------------------------------------------
def saelens_config(d_model: int, training_tokens: int, checkpoints: str) -> Any:
    import sae_lens

    return sae_lens.LanguageModelSAERunnerConfig(
        sae=sae_lens.StandardTrainingSAEConfig(d_in=d_model, d_sae=D_SAE), model_name="random", hook_name=HOOK,
        dataset_path="random-tokens", is_dataset_tokenized=True, streaming=False, context_size=CONTEXT,
        prepend_bos=False, store_batch_size_prompts=STORE_PROMPTS, n_batches_in_buffer=BUFFER_TOKENS // CONTEXT,
        train_batch_size_tokens=BATCH, training_tokens=training_tokens, device="cpu", seed=42, n_checkpoints=0,
        checkpoint_path=checkpoints, output_path=None, logger=sae_lens.LoggingConfig(log_to_wandb=False),
    )


def clock_saelens_loop(clock: Clock) -> None:
    from sae_lens.training.sae_trainer import SAETrainer

    fit = SAETrainer.fit

    def timed_fit(self: Any) -> Any:
        clock.start()
        try:
            return fit(self)
        finally:
            clock.stop()

    SAETrainer.fit = timed_fit  # type: ignore[method-assign]


def saelens_e2e(d_model: int, steps: int) -> dict[str, Any]:
    import sae_lens

    clock = Clock()
    clock_saelens_loop(clock)
    with tempfile.TemporaryDirectory() as checkpoints:
        cfg = saelens_config(d_model, steps * BATCH, checkpoints)
        model, dataset = build_model(d_model), build_dataset(steps * BATCH * 2)
        started = time.perf_counter()
        sae_lens.LanguageModelSAETrainingRunner(cfg, override_model=model, override_dataset=dataset).run()
        wall = time.perf_counter() - started
    return {**clock.rates(steps), "run_tokens_per_s": steps * BATCH / wall}


def saelens_sae_step(d_model: int, steps: int) -> dict[str, Any]:
    import itertools

    import sae_lens
    import torch
    from sae_lens.training.sae_trainer import SAETrainer

    data = torch.randn(4 * BATCH, d_model, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as checkpoints:
        cfg = saelens_config(d_model, steps * BATCH, checkpoints)
        sae = sae_lens.StandardTrainingSAE(sae_lens.StandardTrainingSAEConfig(d_in=d_model, d_sae=D_SAE))
        clock = Clock()
        clock_saelens_loop(clock)
        SAETrainer(cfg.to_sae_trainer_config(), sae, itertools.cycle(data.split(BATCH))).fit()
        return clock.rates(steps)


def saelens_store(d_model: int, steps: int) -> dict[str, Any]:
    from sae_lens.training.activations_store import ActivationsStore

    with tempfile.TemporaryDirectory() as checkpoints:
        cfg = saelens_config(d_model, steps * BATCH, checkpoints)
        store = ActivationsStore.from_config(build_model(d_model), cfg,
                                             override_dataset=build_dataset(steps * BATCH * 2))
        return served(store.next_batch, steps)


# -- driver --------------------------------------------------------------------------------------
def run_case(case: str, d_model: int, steps: int) -> dict[str, Any]:
    runs = {
        "e2e": lambda: saecore_e2e(d_model, steps, overlap=False),
        "e2e+overlap": lambda: saecore_e2e(d_model, steps, overlap=True),
        "store": lambda: saecore_store(d_model, steps),
        "sae step": lambda: saecore_sae_step(d_model, steps),
        "saelens e2e": lambda: saelens_e2e(d_model, steps),
        "saelens store": lambda: saelens_store(d_model, steps),
        "saelens sae step": lambda: saelens_sae_step(d_model, steps),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = runs[case]()
    return {"case": case, "d_model": d_model, "steps": steps, **result, "peak_rss_mb": peak_rss_mb()}


def in_subprocess(case: str, d_model: int, steps: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--case", case, "--d-model", str(d_model), "--steps", str(steps)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TQDM_DISABLE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{case} at d_model {d_model} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (d_model, case): the median of each rate over the repeats, the largest peak RSS."""
    rows: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in runs:
        rows.setdefault((run["d_model"], run["case"]), []).append(run)
    merged = []
    for (d_model, case), group in rows.items():
        row: dict[str, Any] = {"d_model": d_model, "case": case, "repeats": len(group)}
        for key in ("tokens_per_s", "run_tokens_per_s", "cpu_s_per_step", "sys_s_per_step", "faults_per_step"):
            if key in group[0]:
                row[key] = statistics.median(run[key] for run in group)
                row[f"{key}_all"] = [run[key] for run in group]
        row["peak_rss_mb"] = max(run["peak_rss_mb"] for run in group)
        row["peak_rss_mb_all"] = [run["peak_rss_mb"] for run in group]
        if "phase_peak_rss_mb" in group[0]:
            row["phase_peak_rss_mb"] = {phase: max(run["phase_peak_rss_mb"][phase] for run in group)
                                        for phase in group[0]["phase_peak_rss_mb"]}
        merged.append(row)
    return merged


def table(rows: list[dict[str, Any]]) -> str:
    header = (f"{'d_model':>7}  {'case':<16}  {'loop tok/s':>10}  {'run tok/s':>9}  {'CPU s/step':>10}  "
              f"{'sys s/step':>10}  {'faults/step':>11}  {'peak RSS MB':>11}")
    lines = [header, "-" * len(header)]
    for row in rows:
        run_rate = f"{row['run_tokens_per_s']:>9,.0f}" if "run_tokens_per_s" in row else f"{'-':>9}"
        lines.append(f"{row['d_model']:>7}  {row['case']:<16}  {row['tokens_per_s']:>10,.0f}  {run_rate}  "
                     f"{row['cpu_s_per_step']:>10.2f}  {row['sys_s_per_step']:>10.3f}  "
                     f"{row['faults_per_step']:>11,.0f}  {row['peak_rss_mb']:>11,.0f}")
    return "\n".join(lines)


def phase_table(rows: list[dict[str, Any]]) -> str:
    """Peak RSS (MB) reached by the end of each phase of saecore's run: which phase sets the peak."""
    traced = [row for row in rows if "phase_peak_rss_mb" in row]
    if not traced:
        return ""
    phases = list(traced[0]["phase_peak_rss_mb"])
    header = f"{'d_model':>7}  {'case':<16}  " + "  ".join(f"{phase:>16}" for phase in phases)
    lines = [header, "-" * len(header)]
    for row in traced:
        peaks = "  ".join(f"{row['phase_peak_rss_mb'][phase]:>16,.0f}" for phase in phases)
        lines.append(f"{row['d_model']:>7}  {row['case']:<16}  {peaks}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=int, action="append", help="model width(s); default 128 and 512")
    parser.add_argument("--steps", type=int, default=12, help="training steps (batches of 4096 tokens) per case")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (interleaved); the median is shown")
    parser.add_argument("--case", choices=CASES + SAELENS_CASES, action="append", help="run only these cases")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--no-tune-malloc", action="store_true",
                        help="run saecore without its glibc malloc tuning (less peak memory, slower dense steps)")
    args = parser.parse_args()
    widths = args.d_model or [128, 512]
    if args.no_tune_malloc:
        os.environ["_LLM_BENCH_NO_TUNE_MALLOC"] = "1"
    if os.environ.get("_LLM_BENCH_CHILD"):
        print(json.dumps(run_case(args.case[0], widths[0], args.steps)))
        return 0
    os.environ["_LLM_BENCH_CHILD"] = "1"
    cases = args.case or [*CASES, *(SAELENS_CASES if find_spec("sae_lens") else ())]
    runs = []
    for d_model in widths:
        for _ in range(args.repeat):
            for case in cases:
                runs.append(in_subprocess(case, d_model, args.steps))
                print(table(median_rows(runs[-1:])).splitlines()[-1], file=sys.stderr, flush=True)
    rows = median_rows(runs)
    print(table(rows))
    phases = phase_table(rows)
    if phases:
        print(f"\npeak RSS MB by the end of each phase\n{phases}")
    print(json.dumps(rows, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
