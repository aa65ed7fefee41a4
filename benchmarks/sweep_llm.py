"""Wall time of N SAEs trained together on one language-model stream, against one SAE.

The model and data are ``llm_end_to_end.py``'s (a random 2-layer transformer at
``blocks.1.hook_resid_post``, random pretokenized rows of 128 tokens, batches of 4096
tokens); ``--n-layers L`` makes the model deeper and hooks ``blocks.{L-1}``, so that the
model's share of the time is that of a larger language model. Each case is an
:class:`saecore.SAESweepRunner` run in a fresh process:

* ``1 SAE``: a sweep of one TopK SAE (d_sae ``--d-sae``, k 32);
* ``N SAEs``: N TopK SAEs with k = 16, 32, 64, 128, ... on the same stream, which the
  model produces once per batch for all of them (``--same-k``: all N at k 32, with
  learning rates 1e-4, 2e-4, 4e-4, ... so that only the hyperparameter differs);
* ``store``: the source alone serving the same batches (the LLM's share of the time).

``wall s`` is the training loop: from the start of ``run()`` (source built, buffer
filled) to the end of the last step, before the final evaluations (the spliced CE/KL
evaluation runs once per SAE, on the model, and is reported separately as ``run s``).
``ratio`` is the N-SAE loop wall time over the 1-SAE one; training N SAEs one after
another would cost about N. With ``--repeat`` the cases run interleaved and medians are shown.
``--prefetch`` runs the model in the source's background thread
(``prefetch_llm_batches=True``) in every case, so the SAE steps overlap the forward
passes.

::

    python benchmarks/sweep_llm.py [--d-model 512] [--n-saes 4] [--steps 12] [--repeat 3] \
        [--same-k] [--prefetch] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

from llm_end_to_end import BATCH, BUFFER_TOKENS, CONTEXT, STORE_PROMPTS, build_dataset, build_model, peak_rss_mb

CASES = ("1 SAE", "N SAEs", "store")


def source_config(d_model: int, n_layers: int, steps: int, prefetch: bool) -> Any:
    from saecore_source_llm import LLMSourceConfig

    return LLMSourceConfig(
        model=build_model(d_model, n_layers), dataset=build_dataset(steps * BATCH * 2),
        hook_name=f"blocks.{n_layers - 1}.hook_resid_post", context_size=CONTEXT,
        prepend_bos=False, store_batch_size_prompts=STORE_PROMPTS,
        n_batches_in_buffer=BUFFER_TOKENS // (STORE_PROMPTS * CONTEXT), verbose=False,
        n_eval_batches=1, eval_batch_size_prompts=8, prefetch_llm_batches=prefetch,
    )


def sweep(d_model: int, n_layers: int, d_sae: int, settings: list[tuple[int, float]], steps: int,
          prefetch: bool) -> dict[str, float]:
    from saecore_source_llm import LLMSource

    from saecore import SAESweepConfig, SAESweepRunner, SAETrainingRunnerConfig, SweepMember, TopKTrainingSAEConfig
    from saecore.training.trainer import SAETrainer

    source_cfg = source_config(d_model, n_layers, steps, prefetch)
    members = [
        SweepMember(name=f"topk-k{k}-lr{lr:g}", run=SAETrainingRunnerConfig(
            sae=TopKTrainingSAEConfig(d_in=d_model, d_sae=d_sae, k=k), source=source_cfg, lr=lr,
            training_tokens=steps * BATCH, train_batch_size_tokens=BATCH, n_eval_batches=1,
            output_path=None, verbose=False, tune_malloc=True,
        ))
        for k, lr in settings
    ]
    loop_ended: list[float] = []
    end_fit = SAETrainer.end_fit

    def timed_end_fit(self: Any) -> None:
        loop_ended.append(time.perf_counter())
        end_fit(self)

    SAETrainer.end_fit = timed_end_fit  # type: ignore[method-assign]
    source = LLMSource(source_cfg)
    started = time.perf_counter()
    SAESweepRunner(SAESweepConfig(members=members), source=source).run()
    wall = time.perf_counter() - started
    source.close()
    loop = loop_ended[0] - started
    return {"seconds": loop, "tokens_per_s": steps * BATCH / loop, "run_seconds": wall}


def store(d_model: int, n_layers: int, steps: int, prefetch: bool) -> dict[str, float]:
    from saecore_source_llm import LLMSource

    source = LLMSource(source_config(d_model, n_layers, steps, prefetch))
    started = time.perf_counter()
    for _ in range(steps):
        source.next_batch(BATCH)
    wall = time.perf_counter() - started
    source.close()
    return {"seconds": wall, "tokens_per_s": steps * BATCH / wall, "run_seconds": wall}


def member_settings(case: str, n_saes: int, same_k: bool) -> list[tuple[int, float]]:
    """(k, lr) of each SAE in the case."""
    if case == "1 SAE":
        return [(32, 1e-4)]
    if same_k:
        return [(32, 1e-4 * 2**i) for i in range(n_saes)]
    return [(16 * 2**i, 1e-4) for i in range(n_saes)]


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    d_model, steps = args.d_model, args.steps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "store":
            result = store(d_model, args.n_layers, steps, args.prefetch)
        else:
            settings = member_settings(case, args.n_saes, args.same_k)
            result = sweep(d_model, args.n_layers, args.d_sae, settings, steps, args.prefetch)
    return {"case": case, "d_model": d_model, **result, "peak_rss_mb": peak_rss_mb()}


def in_subprocess(case: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--case", case, "--d-model", str(args.d_model), "--d-sae", str(args.d_sae),
               "--n-layers", str(args.n_layers),
               "--n-saes", str(args.n_saes), "--steps", str(args.steps)]
    command += ["--same-k"] * args.same_k + ["--prefetch"] * args.prefetch
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1",
           "_SWEEP_BENCH_CHILD": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--n-layers", type=int, default=2,
                        help="layers of the random model; the SAEs read the last one's residual stream")
    parser.add_argument("--n-saes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12, help="training steps (batches of 4096 tokens) per case")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (interleaved); medians are shown")
    parser.add_argument("--case", choices=CASES, action="append", help="run only these cases")
    parser.add_argument("--same-k", action="store_true", help="all N SAEs at k 32, differing in learning rate")
    parser.add_argument("--prefetch", action="store_true", help="run the model in the source's prefetch thread")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if os.environ.get("_SWEEP_BENCH_CHILD"):
        print(json.dumps(run_case(args.case[0], args)))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {case: [] for case in args.case or CASES}
    for _ in range(args.repeat):
        for case in runs:
            runs[case].append(in_subprocess(case, args))
            print(f"{case}: {runs[case][-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    seconds = {case: statistics.median(run["seconds"] for run in group) for case, group in runs.items()}
    print(f"{args.n_layers} layers, d_model {args.d_model}, TopK d_sae {args.d_sae}, "
          f"{args.steps} steps of {BATCH} tokens, N = {args.n_saes}, median of {args.repeat}")
    print(f"{'case':<8}  {'wall s':>7}  {'tok/s':>8}  {'run s':>7}  {'peak RSS MB':>11}")
    for case, group in runs.items():
        label = case.replace("N SAEs", f"{args.n_saes} SAEs")
        run_seconds = statistics.median(run["run_seconds"] for run in group)
        print(f"{label:<8}  {seconds[case]:>7.1f}  {args.steps * BATCH / seconds[case]:>8,.0f}  {run_seconds:>7.1f}  "
              f"{max(run['peak_rss_mb'] for run in group):>11,.0f}")
    result: dict[str, Any] = {"args": vars(args), "seconds": seconds, "runs": runs}
    if "1 SAE" in seconds and "N SAEs" in seconds:
        result["ratio"] = seconds["N SAEs"] / seconds["1 SAE"]
        print(f"ratio {args.n_saes} SAEs / 1 SAE: {result['ratio']:.2f} (goal < 1.3 for 4); "
              f"{args.n_saes} separate runs would take about {args.n_saes:.0f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
