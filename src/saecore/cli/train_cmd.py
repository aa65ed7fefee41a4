"""``saecore train --arch NAME [--source NAME] [--config run.yaml] [--<field> VALUE ...]``.

Flags come from the registered config models of the chosen architecture and source,
plus the trainer and logging configs. A YAML or JSON file gives the same settings in
nested form; flags override it::

    arch: topk
    source: synthetic
    sae: {k: 16, d_sae: 512}
    source_config: {n_features: 256}
    logger: {log_to_wandb: false}
    lr: 0.0003
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from saecore.cli.model_flags import FlagTable, FriendlyArgumentParser
from saecore.cli.train_presets import apply_presets
from saecore.errors import ConfigError
from saecore.registry import get_registry
from saecore.training.errors import TrainingInterruptedError

FILE_SECTIONS = {"arch", "source", "sae", "source_config", "logger"}


def add_parser(commands: Any, name: str) -> None:
    commands.add_parser(name, add_help=False, help="train an SAE (saecore train --arch NAME --help for options)")


def read_config_file(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        data = json.loads(file.read_text()) if file.suffix == ".json" else yaml.safe_load(file.read_text())
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot parse ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _pre_parser() -> argparse.ArgumentParser:
    parser = FriendlyArgumentParser(prog="saecore train", add_help=False)
    parser.add_argument("--arch", default=None)
    parser.add_argument("--source", default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def build_parser(arch: str, source: str) -> tuple[argparse.ArgumentParser, FlagTable]:
    from saecore.training import LoggingConfig, TrainerConfig

    registry = get_registry()
    recipe = registry.training_recipe(arch)
    source_entry = registry.source(source)
    parser = FriendlyArgumentParser(
        prog="saecore train",
        description=f"Train a {arch!r} SAE on activations from the {source!r} source.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    recipes, sources = ", ".join(sorted(registry.training_recipes)), ", ".join(sorted(registry.sources))
    parser.add_argument("--arch", default=arch, help=f"training recipe; installed: {recipes}")
    parser.add_argument("--source", default=source, help=f"activation source; installed: {sources}")
    parser.add_argument("--config", default=None, help="YAML or JSON file of settings; flags override it")
    table = FlagTable()
    table.add_section(parser, "sae", f"SAE options ({arch}, from {recipe.training_config_class.__name__})",
                      recipe.training_config_class)
    table.add_section(parser, "source_config", f"source options ({source}, from {source_entry.config_class.__name__})",
                      source_entry.config_class)
    table.add_section(parser, "trainer", "trainer options", TrainerConfig)
    table.add_section(parser, "logger", "logging options", LoggingConfig)
    return parser, table


def collect_settings(argv: list[str]) -> tuple[str, str, dict[str, dict[str, Any]], bool]:
    """Merge the config file and the flags into per-section dicts."""
    pre, _ = _pre_parser().parse_known_args(argv)
    file_data = read_config_file(pre.config) if pre.config else {}
    registry = get_registry()
    arch = pre.arch or file_data.get("arch")
    if not arch:
        if pre.help:
            print("usage: saecore train --arch NAME [--source NAME] [--config FILE] [--<field> VALUE ...]")
            print(f"installed training recipes: {', '.join(sorted(registry.training_recipes)) or 'none'}")
            print("run `saecore train --arch NAME --help` for the options of one architecture")
            return "", "", {}, True
        raise ConfigError(
            f"--arch is required; installed training recipes: {', '.join(sorted(registry.training_recipes)) or 'none'}"
        )
    source = pre.source or file_data.get("source") or "synthetic"
    parser, table = build_parser(arch, source)
    if pre.help:
        parser.print_help()
        return arch, source, {}, True
    args = parser.parse_args(argv)
    sections: dict[str, dict[str, Any]] = {"sae": {}, "source_config": {}, "trainer": {}, "logger": {}}
    for key, value in file_data.items():
        if key in ("sae", "source_config", "logger"):
            if not isinstance(value, dict):
                raise ConfigError(f"{pre.config}: '{key}' must be a mapping")
            sections[key].update(value)
        elif key not in FILE_SECTIONS:
            if key not in table.targets:
                raise ConfigError(f"{pre.config}: unknown setting {key!r}; allowed top-level keys: arch, source, sae, "
                                  f"source_config, logger, and trainer fields ({', '.join(sorted(_trainer_fields()))})")
            sections["trainer"][key] = value
    for section, values in table.values_by_section(args).items():
        sections[section].update(values)
    return arch, source, sections, False


def _trainer_fields() -> list[str]:
    from saecore.training import TrainerConfig

    return list(TrainerConfig.model_fields)


def run_from_argv(argv: list[str]) -> int:
    from saecore.config.validation import validate_model
    from saecore.distributed import local_device
    from saecore.training import LoggingConfig, SAETrainingRunner, SAETrainingRunnerConfig

    arch, source_name, sections, printed_help = collect_settings(argv)
    if printed_help:
        return 0
    registry = get_registry()
    recipe = registry.training_recipe(arch)
    source_entry = registry.source(source_name)
    trainer = sections["trainer"]
    source_cfg = validate_model(source_entry.config_class, sections["source_config"], f"source {source_name!r}")
    seed, device = int(trainer.get("seed", 42)), str(trainer.get("device", "cpu"))
    source = source_entry.source_class(source_cfg, seed=seed, device=str(local_device(device)))
    sae_values = apply_presets(arch, source_name, source.d_in, sections["sae"], trainer)
    trainer.setdefault("output_path", str(Path("saecore_runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"))
    trainer.setdefault("checkpoint_path", str(Path(trainer["output_path"]) / "checkpoints"))
    sae_cfg = validate_model(recipe.training_config_class, sae_values, f"SAE options for {arch!r}")
    logger = validate_model(LoggingConfig, sections["logger"], "logging options")
    cfg = validate_model(SAETrainingRunnerConfig, {**trainer, "sae": sae_cfg, "source": source_cfg, "logger": logger},
                         "trainer options")
    try:
        runner = SAETrainingRunner(cfg, source=source)
        runner.run()
    except TrainingInterruptedError as error:
        print(f"saecore: {error}", file=sys.stderr)
        return 130
    finally:
        source.close()
    if runner.is_main_process:
        print(runner.summary.format(), file=sys.stdout)
    return 0
