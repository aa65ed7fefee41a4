"""Quality benchmark: does each installed architecture recover the synthetic source's features?

Trains every installed architecture of ``standard``, ``gated``, ``jumprelu``, ``topk`` on the
built-in synthetic source with exactly the settings ``saecore train --arch NAME`` uses (the
runner's defaults plus the CLI's synthetic presets, so this measures what users get), then
prints one row per architecture::

    python benchmarks/quality_synthetic.py [--arch topk --arch gated] [--json results.json]

A run is healthy when ``recovered`` (fraction of true features matched by a decoder row at
cosine ≥ 0.9) is at least 0.9.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from saecore.cli.train_presets import apply_presets
from saecore.registry import get_registry
from saecore.sources.synthetic import SyntheticSourceConfig
from saecore.training.runner import TrainingRunner
from saecore.training.runner_config import TrainingRunnerConfig

ARCHITECTURES = ("standard", "gated", "jumprelu", "topk", "batchtopk", "matryoshka_batchtopk")
COLUMNS = (
    ("architecture", "{:<12}"),
    ("l0", "{:>7.2f}"),
    ("explained_variance", "{:>9.4f}"),
    ("dead_features", "{:>5d}"),
    ("fraction_recovered", "{:>9.3f}"),
    ("mean_max_cosine", "{:>8.3f}"),
    ("seconds", "{:>7.1f}"),
)
HEADERS = ("architecture", "L0", "expl.var", "dead", "recovered", "mean cos", "seconds")


def train_one(arch: str, seed: int, device: str, training_tokens: int | None) -> dict[str, Any]:
    """Train ``arch`` as ``saecore train --arch ARCH`` would and return its scores."""
    source_cfg = SyntheticSourceConfig()
    trainer_values: dict[str, Any] = {"seed": seed, "device": device}
    if training_tokens is not None:
        trainer_values["training_tokens"] = training_tokens
    sae_values = apply_presets(arch, "synthetic", source_cfg.d_in, {}, trainer_values)
    recipe = get_registry().training_recipe(arch)
    cfg = TrainingRunnerConfig(
        sae=recipe.training_config_class(**sae_values),
        source=source_cfg,
        output_path=None,
        verbose=False,
        **trainer_values,
    )
    runner = TrainingRunner(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.run()
    summary = runner.summary
    assert summary is not None and summary.ground_truth is not None
    return {
        "architecture": arch,
        "l0": summary.l0,
        "explained_variance": summary.explained_variance,
        "dead_features": summary.dead_features,
        "fraction_recovered": summary.ground_truth.fraction_recovered,
        "mean_max_cosine": summary.ground_truth.mean_max_cosine,
        "seconds": summary.seconds,
        "d_sae": summary.d_sae,
        "training_tokens": summary.n_tokens,
        "settings": {"sae": sae_values, "trainer": trainer_values},
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    widths = [len(fmt.format(rows[0][key])) if rows else len(h) for (key, fmt), h in zip(COLUMNS, HEADERS)]
    widths = [max(w, len(h)) for w, h in zip(widths, HEADERS)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(HEADERS, widths)))]
    for row in rows:
        cells = [fmt.format(row[key]) for key, fmt in COLUMNS]
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES,
                        help="architecture to train (repeatable; default: every installed one)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--training-tokens", type=int, default=None, help="override the preset token budget")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    installed = get_registry().training_recipes
    wanted = args.arch or list(ARCHITECTURES)
    missing = [arch for arch in wanted if arch not in installed]
    if missing:
        print(f"skipping (not installed): {', '.join(missing)}", file=sys.stderr)
    rows = []
    for arch in (a for a in wanted if a in installed):
        rows.append(train_one(arch, args.seed, args.device, args.training_tokens))
        print(f"trained {arch}", file=sys.stderr, flush=True)
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"seed": args.seed, "device": args.device, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
