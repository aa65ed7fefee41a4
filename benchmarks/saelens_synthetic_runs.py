"""Whole training runs on SAELens's synthetic data model: saecore beside SAELens 6, recipe by recipe.

SAELens ships a synthetic data model (``sae_lens.synthetic``): ground-truth feature vectors,
Zipfian firing probabilities, a feature hierarchy and low-rank correlations between
features. This script draws ``--samples`` activations from one such model (2048 features in
d_in 256 unless told) and, for every recipe both libraries have, trains one saecore SAE and
one SAELens SAE (d_sae 2048, k 5, batch 1024) on exactly those batches in the same order,
with the trainer settings of SAELens's ``train_toy_sae`` (Adam, constant lr 3e-4). saecore
reads the rows through its ``TensorSource`` (unshuffled); SAELens's ``SAETrainer`` reads the
same rows batch by batch.

For each run it prints the wall and CPU seconds of the training call alone (data
generation excluded, saecore's final evaluation included; ``speedup`` is SAELens's over
saecore's, CPU in brackets, which a busy machine disturbs far less) and SAELens's own synthetic metrics
(``eval_sae_on_synthetic_data``, on the same fresh samples for both SAEs): MCC between the
decoder and the true features, the F1 of latents as feature detectors, explained variance,
L0 and dead latents. The same maths trained on the same batches should score alike::

    nox -s bench_synthetic -- [--samples 1000000] [--recipe topk --recipe batchtopk] [--json out.json]
    python benchmarks/saelens_synthetic_runs.py [...]   # with sae-lens 6 and the architecture plugins installed

Both libraries run in one process, one after the other; saecore's trainer tunes glibc
malloc for the process (``tune_malloc``), so the SAELens run after it gets that tuning too.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import torch

D_IN = 256
D_SAE = 2048
K = 5
BATCH = 1024
LR = 3e-4
DEAD_FEATURE_WINDOW = 1000
FEATURE_SAMPLING_WINDOW = 2000
MATRYOSHKA_WIDTHS = [D_SAE // 8, D_SAE // 4, D_SAE // 2, D_SAE]

# The training SAE class (the same name in both libraries) and its config's settings.
RECIPES: dict[str, tuple[str, dict[str, Any]]] = {
    "standard": ("StandardTrainingSAE", {}),
    "topk": ("TopKTrainingSAE", {"k": K}),
    "batchtopk": ("BatchTopKTrainingSAE", {"k": K}),
    "matryoshka_batchtopk": ("MatryoshkaBatchTopKTrainingSAE", {"k": K, "matryoshka_widths": MATRYOSHKA_WIDTHS}),
    "jumprelu": ("JumpReLUTrainingSAE", {}),
    "gated": ("GatedTrainingSAE", {}),
}
METRICS = ("mcc", "f1", "explained_variance", "sae_l0", "dead_latents")


class Clock:
    """Wall seconds and CPU seconds (all threads of this process) of the ``with`` block.

    CPU seconds measure the work done, which a busy shared machine disturbs far less than wall time.
    """

    def __enter__(self) -> Clock:
        self._started = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._started[0]
        self.cpu = time.process_time() - self._started[1]


def synthetic_model(n_features: int, seed: int) -> Any:
    """SAELens's synthetic model: Zipfian firing, a two-level hierarchy and low-rank correlations."""
    from sae_lens.synthetic import HierarchyConfig, LowRankCorrelationConfig, SyntheticModelConfig
    from sae_lens.synthetic.synthetic_model import SyntheticModel

    cfg = SyntheticModelConfig(
        num_features=n_features, hidden_dim=D_IN,
        hierarchy=HierarchyConfig(total_root_nodes=n_features // 32, branching_factor=4, max_depth=1),
        correlation=LowRankCorrelationConfig(seed=seed), seed=seed,
    )
    return SyntheticModel(cfg)


def draw_rows(model: Any, samples: int, seed: int) -> torch.Tensor:
    """``samples`` activations from the model, drawn batch by batch from a seeded generator state."""
    torch.manual_seed(seed)
    return torch.cat([model.sample(BATCH) for _ in range(samples // BATCH)])


def train_saecore(recipe: str, rows: torch.Tensor, seed: int) -> tuple[Any, Clock]:
    import saecore.saes
    from saecore.sources.in_memory import TensorSource, TensorSourceConfig
    from saecore.training import SAETrainer, TrainerConfig

    class_name, settings = RECIPES[recipe]
    sae_class = getattr(saecore.saes, class_name)
    torch.manual_seed(seed)
    sae = sae_class(getattr(saecore.saes, f"{class_name}Config")(d_in=D_IN, d_sae=D_SAE, **settings))
    cfg = TrainerConfig(
        training_tokens=rows.shape[0], train_batch_size_tokens=BATCH, lr=LR, lr_end=LR, lr_scheduler_name="constant",
        dead_feature_window=DEAD_FEATURE_WINDOW, feature_sampling_window=FEATURE_SAMPLING_WINDOW, n_eval_batches=1,
        output_path=None, verbose=False, tune_malloc=True, seed=seed,
    )
    source = TensorSource(TensorSourceConfig(data=rows, shuffle=False))
    with Clock() as clock:
        SAETrainer(cfg, sae, source).fit()
    return sae, clock


def train_saelens(recipe: str, rows: torch.Tensor, seed: int) -> tuple[Any, Clock]:
    import sae_lens
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    class_name, settings = RECIPES[recipe]
    torch.manual_seed(seed)
    sae = getattr(sae_lens, class_name)(getattr(sae_lens, f"{class_name}Config")(d_in=D_IN, d_sae=D_SAE, **settings))
    cfg = SAETrainerConfig(
        n_checkpoints=0, checkpoint_path=None, save_final_checkpoint=False, total_training_samples=rows.shape[0],
        device="cpu", autocast=False, lr=LR, lr_end=LR, lr_scheduler_name="constant", lr_warm_up_steps=0,
        adam_beta1=0.9, adam_beta2=0.999, lr_decay_steps=0, n_restart_cycles=1, train_batch_size_samples=BATCH,
        dead_feature_window=DEAD_FEATURE_WINDOW, feature_sampling_window=FEATURE_SAMPLING_WINDOW,
        logger=LoggingConfig(log_to_wandb=False, eval_every_n_wandb_logs=2**31 - 1), n_batches_for_norm_estimate=1000,
    )
    batches: Iterator[torch.Tensor] = iter(rows.split(BATCH))
    with Clock() as clock:
        SAETrainer(cfg, sae, batches).fit()
    return sae, clock


def synthetic_metrics(sae: Any, model: Any, eval_samples: int, seed: int) -> dict[str, float]:
    """SAELens's synthetic evaluation, on samples drawn from the same generator state for every SAE."""
    from sae_lens.synthetic.evals import eval_sae_on_synthetic_data

    torch.manual_seed(seed)
    result = eval_sae_on_synthetic_data(sae, model.feature_dict, model.activation_generator,
                                        num_samples=eval_samples, batch_size=min(eval_samples, 8192))
    return {"mcc": result.mcc, "f1": result.classification.f1_score, "explained_variance": result.explained_variance,
            "sae_l0": result.sae_l0, "dead_latents": result.dead_latents}


def run_recipe(recipe: str, model: Any, rows: torch.Tensor, eval_samples: int, seed: int) -> list[dict[str, Any]]:
    results = []
    for library, train in (("saecore", train_saecore), ("SAELens", train_saelens)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae, clock = train(recipe, rows, seed)
            metrics = synthetic_metrics(sae, model, eval_samples, seed + 1)
        results.append({"recipe": recipe, "library": library, "seconds": clock.wall, "cpu_seconds": clock.cpu,
                        **metrics})
    return results


def speedups(results: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Per recipe, SAELens's ``key`` (wall or CPU seconds) over saecore's (above 1: saecore is faster)."""
    seconds = {(row["recipe"], row["library"]): row[key] for row in results}
    return {recipe: seconds[(recipe, "SAELens")] / seconds[(recipe, "saecore")]
            for recipe, library in seconds if library == "saecore" and (recipe, "SAELens") in seconds}


def table(results: list[dict[str, Any]]) -> str:
    wall, cpu = speedups(results, "seconds"), speedups(results, "cpu_seconds")
    header = (f"{'recipe':<21}  {'library':<8}  {'seconds':>8}  {'CPU s':>7}  {'speedup':>13}  {'MCC':>6}  "
              f"{'F1':>6}  {'expl.var':>8}  {'L0':>6}  {'dead':>5}")
    lines = [header, "-" * len(header)]
    for row in results:
        recipe = row["recipe"]
        speedup = f"{wall[recipe]:>5.1f}x ({cpu[recipe]:.1f}x)" if row["library"] == "saecore" else f"{'':>13}"
        lines.append(f"{recipe:<21}  {row['library']:<8}  {row['seconds']:>8.1f}  {row['cpu_seconds']:>7.1f}  "
                     f"{speedup}  {row['mcc']:>6.4f}  {row['f1']:>6.4f}  {row['explained_variance']:>8.4f}  "
                     f"{row['sae_l0']:>6.2f}  {row['dead_latents']:>5d}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=102_400, help="training samples (a multiple of the batch 1024)")
    parser.add_argument("--features", type=int, default=2048, help="ground-truth features of the synthetic model")
    parser.add_argument("--eval-samples", type=int, default=50_000, help="fresh samples for the synthetic metrics")
    parser.add_argument("--recipe", choices=tuple(RECIPES), action="append", help="run only these recipes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.samples < BATCH or args.samples % BATCH:
        parser.error(f"--samples must be a positive multiple of the batch size {BATCH}, got {args.samples}")
    model = synthetic_model(args.features, args.seed)
    rows = draw_rows(model, args.samples, args.seed)
    results = []
    for recipe in args.recipe or RECIPES:
        results.extend(run_recipe(recipe, model, rows, args.eval_samples, args.seed))
        print("\n".join(table(results[-2:]).splitlines()[2:]), flush=True)
    print(table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
