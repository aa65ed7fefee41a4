"""``saecore eval PATH [--source NAME] [--<source field> VALUE ...] [--json]``: measure a saved SAE.

The SAE is loaded from its folder and fed activations from any registered source, by
default the synthetic one (as for ``saecore train``). Source
settings not given as flags come from the SAE's cfg.json metadata, which records where
its training activations came from (``model_name``, ``hook_name``, ``context_size``,
``dataset_path`` …): an SAE trained with ``saecore train --source llm`` is evaluated by
``saecore eval PATH --source llm`` alone. A source config class may define
``defaults_from_sae_metadata(metadata) -> dict`` to choose those defaults itself;
otherwise every config field named in the metadata is taken.

It prints the reconstruction and sparsity metrics on ``n_eval_batches`` fresh batches,
then what the source measures itself (``ActivationSource.evaluate_sae``: the llm source
splices the SAE into the model and reports CE-loss and KL scores).

The flags depend on the source, so the command line is read twice, as ``saecore train``
does: once for ``--source``, then with that source's flags.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from saecore.cli.model_flags import FlagTable, FriendlyArgumentParser
from saecore.cli.train_cmd import DEFAULT_SOURCE
from saecore.errors import ConfigError, SAEFileError
from saecore.registry import get_registry


class EvalOptions(BaseModel):
    """The command's own settings (a source field of the same name is set too)."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(default="cpu", description="Device of the SAE and of the activation batches.")
    dtype: str | None = Field(default=None, description="Load the SAE in this dtype (None: as saved).")
    seed: int = Field(default=42, ge=0, lt=2**32, description="Seeds torch and the source's shuffling.")
    n_eval_batches: int = Field(default=10, gt=0, description="Batches the reconstruction metrics average over.")
    batch_size_tokens: int = Field(default=4096, gt=0, description="Activations per reconstruction batch.")
    converter: str = Field(default="sae_lens", description="Format of the SAE folder.")


def add_parser(commands: Any, name: str) -> None:
    commands.add_parser(name, add_help=False,
                        help="evaluate a saved SAE on a source's activations (default source: synthetic)")


def _pre_parser() -> argparse.ArgumentParser:
    parser = FriendlyArgumentParser(prog="saecore eval", add_help=False)
    parser.add_argument("--source", default=None)
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def build_parser(source: str) -> tuple[argparse.ArgumentParser, FlagTable]:
    registry = get_registry()
    entry = registry.source(source)
    parser = FriendlyArgumentParser(
        prog="saecore eval",
        description=f"Evaluate a saved SAE on activations from the {source!r} source. Source options not given "
                    "default to the SAE's cfg.json metadata, then to the values shown.",
    )
    parser.add_argument("sae_path", metavar="PATH", help="the SAE folder (cfg.json + sae_weights.safetensors)")
    parser.add_argument("--source", default=source,
                        help=f"activation source (default: {DEFAULT_SOURCE}); installed sources: {_sources()}")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    table = FlagTable()
    table.add_section(parser, "eval", "evaluation options", EvalOptions)
    table.add_section(parser, "source_config", f"source options ({source}, from {entry.config_class.__name__})",
                      entry.config_class)
    return parser, table


def _sources() -> str:
    return ", ".join(sorted(get_registry().sources)) or "none"


def metadata_defaults(config_class: type[BaseModel], metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Source settings recorded in an SAE's metadata (the source class may choose them itself)."""
    choose = getattr(config_class, "defaults_from_sae_metadata", None)
    if choose is not None:
        return dict(choose(metadata))
    return {name: metadata[name] for name in config_class.model_fields if metadata.get(name) is not None}


def evaluate(path: Path, source_name: str, source_values: Mapping[str, Any], options: EvalOptions) -> dict[str, Any]:
    """Load the SAE at ``path``, build the source, and return everything the command prints."""
    import torch

    from saecore.config.validation import validate_model
    from saecore.evals.reconstruction import evaluate_reconstruction
    from saecore.sae import SAE
    from saecore.training.rng import seed_everything

    if not path.is_dir():
        raise SAEFileError(f"{path}: no such SAE folder")
    sae = SAE.load_from_disk(path, device=options.device, dtype=options.dtype, converter=options.converter)
    entry = get_registry().source(source_name)
    values = {**metadata_defaults(entry.config_class, sae.cfg.metadata.to_dict()), **source_values}
    source_cfg = validate_model(entry.config_class, values, f"source {source_name!r}")
    seed_everything(options.seed)
    source = entry.source_class(source_cfg, seed=options.seed, device=options.device)
    try:
        check_source_fits(sae, source, path, source_name)
        source.check_batch_size(options.batch_size_tokens)
        batches = (source.next_batch(options.batch_size_tokens) for _ in range(options.n_eval_batches))
        metrics = evaluate_reconstruction(sae, batches)
        with torch.no_grad():
            source_metrics = source.evaluate_sae(sae, None)
    finally:
        source.close()
    return {
        "sae": str(path),
        "architecture": sae.cfg.architecture(),
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "source": source_name,
        "source_config": source_cfg.model_dump(mode="json", fallback=lambda value: f"<{type(value).__name__}>"),
        "n_tokens": metrics.n_tokens,
        "metrics": metrics.as_log_dict(),
        "source_metrics": dict(source_metrics),
    }


def check_source_fits(sae: Any, source: Any, path: Path, source_name: str) -> None:
    """Refuse a source whose rows are not the SAE's input (a transcoder's: its input then its target)."""
    if sae.cfg.PREDICTS_TARGET:
        if source.target_width == 0:
            raise ConfigError(f"the SAE at {path} is a transcoder ({sae.cfg.architecture()}) but the {source_name!r} "
                              "source serves inputs only; give it the output hook too (--hook-name-out for the llm "
                              "source) or a cache of (input, target) pairs")
        widths = (source.d_in - source.target_width, source.target_width)
        if widths != (sae.cfg.d_in, sae.cfg.d_target):
            raise ConfigError(f"the transcoder at {path} has d_in={sae.cfg.d_in}, d_out={sae.cfg.d_target} but the "
                              f"{source_name!r} source serves inputs of width {widths[0]} and targets of width "
                              f"{widths[1]}; give the source it was trained on and its settings")
        return
    if sae.cfg.d_in != source.d_in:
        raise ConfigError(f"the SAE at {path} has d_in={sae.cfg.d_in} but the {source_name!r} source serves "
                          f"activations of width {source.d_in}; give the source it was trained on (--source, "
                          f"default {DEFAULT_SOURCE}) and its settings")


def format_report(report: Mapping[str, Any]) -> str:
    lines = [
        f"SAE      {report['sae']} ({report['architecture']}, d_in {report['d_in']}, d_sae {report['d_sae']})",
        f"source   {report['source']}",
        f"tokens   {report['n_tokens']:,}",
    ]
    rows = {**report["metrics"], **report["source_metrics"]}
    width = max(len(name) for name in rows)
    lines += [f"  {name:{width}}  {value:.6g}" for name, value in rows.items()]
    return "\n".join(lines)


def run_from_argv(argv: list[str]) -> int:
    from saecore.config.validation import validate_model

    pre, _ = _pre_parser().parse_known_args(argv)
    source_name = pre.source or DEFAULT_SOURCE
    parser, table = build_parser(source_name)
    if pre.help:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    sections = table.values_by_section(args)
    options = validate_model(EvalOptions, sections.get("eval", {}), "eval options")
    # With --json, stdout carries the JSON alone: whatever a model library prints goes to stderr.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        report = evaluate(Path(args.sae_path).expanduser(), source_name, sections.get("source_config", {}), options)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
