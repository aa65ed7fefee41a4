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

Several ``--arch`` (or ``arch: [topk, standard]``) train one SAE per architecture
together on one stream (a sweep: the source runs once per batch for all of them); an
SAE flag applies to every chosen architecture that has the field, and each SAE is saved
to ``{output_path}/{arch}``; under torchrun ``--sae-placement partition`` gives each rank
its own SAEs instead of training every SAE on every rank. ``--sweep FILE`` runs a sweep file (see
``saecore.training.sweep_config``) with per-SAE settings.

``--help`` shows, for each option, the value that runs when it is not given: the config
model's default, or what the command fills in for the chosen architecture and source (the
input size from the source, the SAE width from it, the presets of ``apply_presets``, a new
run folder).
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from pathlib import Path
from typing import Any

from saecore.cli.model_flags import FlagTable, FriendlyArgumentParser, format_default
from saecore.cli.settings_file import read_config_file
from saecore.cli.train_presets import CLI_TRAINER_DEFAULTS, apply_presets
from saecore.config.validation import validate_model
from saecore.errors import ConfigError, UnknownNameError
from saecore.registry import get_registry
from saecore.training.errors import TrainingInterruptedError
from saecore.training.run_folders import default_run_folder

FILE_SECTIONS = {"arch", "source", "sae", "source_config", "logger", "sae_placement"}
DEFAULT_SOURCE = "synthetic"
PLACEMENTS = ("replicate", "partition")


def add_parser(commands: Any, name: str) -> None:
    commands.add_parser(name, add_help=False, help="train an SAE (saecore train --arch NAME --help for options)")


def _pre_parser() -> argparse.ArgumentParser:
    parser = FriendlyArgumentParser(prog="saecore train", add_help=False)
    parser.add_argument("--arch", action="append", default=None)
    parser.add_argument("--source", default=None)
    parser.add_argument("--sweep", default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def build_parser(archs: list[str], source: str, config_file: str | None = None,
                 file_data: dict[str, Any] | None = None) -> tuple[argparse.ArgumentParser, FlagTable]:
    """The parser for these architectures; SAE flags land in one ``sae:{arch}`` section per architecture.

    Settings from a config file show in the help as the values used (``default: 16, from run.yaml``).
    """
    from saecore.training import LoggingConfig, TrainerConfig

    registry = get_registry()
    recipes_used = {arch: _named(registry.training_recipe, "--arch", arch) for arch in archs}
    source_entry = _named(registry.source, "--source", source)
    what = f"a {archs[0]!r} SAE" if len(archs) == 1 else f"{', '.join(map(repr, archs))} SAEs together"
    parser = FriendlyArgumentParser(
        prog="saecore train",
        description=f"Train {what} on activations from the {source!r} source. Each option shows the value used "
                    "when it is not given, for this architecture and source.",
    )
    recipes, sources = ", ".join(sorted(registry.training_recipes)), ", ".join(sorted(registry.sources))
    parser.add_argument("--arch", action="append", default=None,
                        help=f"training recipe, repeat to train several together; installed: {recipes}")
    parser.add_argument("--source", default=source,
                        help=f"activation source; installed: {sources} (default: {DEFAULT_SOURCE})")
    parser.add_argument("--config", default=None, help="YAML or JSON file of settings; flags override it")
    parser.add_argument("--sweep", default=None, help="a sweep file: SAEs with per-SAE settings on one source")
    parser.add_argument("--sae-placement", choices=PLACEMENTS, default=None,
                        help="several --arch under torchrun: 'replicate' trains every SAE on every rank "
                             "(data-parallel); 'partition' gives each rank its own SAEs on all-gathered batches "
                             "(default: replicate)")
    file_source = (file_data or {}).get("source_config")
    file_d_in = file_source.get("d_in") if isinstance(file_source, dict) else None
    sae_defaults, trainer_defaults = _preset_defaults(archs, source, source_entry.config_class, file_d_in)
    trainer_defaults.update(OUTPUT_DEFAULTS if len(archs) == 1 else SWEEP_OUTPUT_DEFAULTS)
    from_file = _file_notes(config_file, file_data or {})
    table = FlagTable()
    for arch, recipe in recipes_used.items():
        table.add_section(parser, f"sae:{arch}", f"SAE options ({arch}, from {recipe.training_config_class.__name__})",
                          recipe.training_config_class, {**sae_defaults, **from_file["sae"]})
    table.add_section(parser, "source_config", f"source options ({source}, from {source_entry.config_class.__name__})",
                      source_entry.config_class, from_file["source_config"])
    table.add_section(parser, "trainer", "trainer options", TrainerConfig, {**trainer_defaults, **from_file["trainer"]})
    table.add_section(parser, "logger", "logging options", LoggingConfig, from_file["logger"])
    return parser, table


def _file_notes(config_file: str | None, file_data: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Help notes for the settings a config file gives, by section (top-level keys are trainer fields)."""
    notes: dict[str, dict[str, str]] = {"sae": {}, "source_config": {}, "trainer": {}, "logger": {}}
    for key, value in file_data.items():
        if key in ("sae", "source_config", "logger") and isinstance(value, dict):
            notes[key].update({name: f"default: {format_default(item)}, from {config_file}"
                               for name, item in value.items()})
        elif key not in FILE_SECTIONS:
            notes["trainer"][key] = f"default: {format_default(value)}, from {config_file}"
    return notes


def _preset_defaults(archs: list[str], source: str, source_config: type[Any],
                     given_d_in: Any = None) -> tuple[dict[str, str], dict[str, str]]:
    """Help notes for the SAE and trainer fields ``apply_presets`` fills in, by field name.

    The source's input size is the ``d_in`` a config file gives it, or its config's default
    where it has one; otherwise (a model's width) it is known only once the source runs,
    and a preset that depends on it is described as such.
    """
    d_in_field = source_config.model_fields.get("d_in")
    default_d_in = d_in_field.default if d_in_field is not None else None
    known_d_in = next((d_in for d_in in (given_d_in, default_d_in) if isinstance(d_in, int) and d_in > 0), None)
    d_out_field = source_config.model_fields.get("d_out")  # a source of (input, target) pairs
    known_d_out = d_out_field.default if d_out_field is not None and isinstance(d_out_field.default, int) else 0
    sae_values: dict[str, dict[str, str]] = {}
    trainer_values: dict[str, dict[str, str]] = {}
    for arch in archs:
        trainer: dict[str, Any] = {}
        sae = apply_presets(arch, source, (known_d_in or 1) + known_d_out, {}, trainer, known_d_out)
        moved = apply_presets(arch, source, 2, {}, {}) if known_d_in is None else sae
        for name, value in sae.items():
            if name in ("d_in", "d_out"):
                shown = f"from the source: {value}" if known_d_in else "from the source"
            elif name == "d_sae" and value % sae["d_in"] == 0:
                multiple = f"{value // sae['d_in']} × d_in"
                shown = f"{value}, {multiple}" if known_d_in else f"{multiple} (from the source)"
            elif moved[name] != value:
                shown = f"depends on the source's d_in, {source} preset"
            else:
                shown = f"{format_default(value)}, {source} preset"
            sae_values.setdefault(name, {})[arch] = shown
        for name, value in trainer.items():
            trainer_values.setdefault(name, {})[arch] = f"{format_default(value)}, {source} preset"
    return _notes(sae_values, archs), _notes(trainer_values, archs)


def _notes(by_field: dict[str, dict[str, str]], archs: list[str]) -> dict[str, str]:
    """One help note per field: its value, or each architecture's where they are not all the same."""
    notes = {}
    for name, by_arch in by_field.items():
        shown = set(by_arch.values())
        same_for_all = len(shown) == 1 and len(by_arch) == len(archs)
        notes[name] = "default: " + (shown.pop() if same_for_all else "; ".join(
            f"{arch}: {value}" for arch, value in by_arch.items()))
    return notes


def _named(lookup: Any, flag: str, name: str) -> Any:
    try:
        return lookup(name)
    except UnknownNameError as error:
        raise UnknownNameError(f"{flag} {name}: {error}") from None


def collect_settings(argv: list[str]) -> tuple[list[str], str, dict[str, dict[str, Any]], bool]:
    """Merge the config file and the flags into per-section dicts (``sae:{arch}`` per architecture)."""
    pre, _ = _pre_parser().parse_known_args(argv)
    file_data = read_config_file(pre.config) if pre.config else {}
    registry = get_registry()
    archs = _chosen_archs(pre.arch, file_data.get("arch"), pre.config)
    if not archs:
        if pre.help:
            print("usage: saecore train --arch NAME [--arch NAME ...] [--source NAME] [--config FILE] "
                  "[--<field> VALUE ...]")
            print("       saecore train --sweep FILE")
            print(f"installed training recipes: {', '.join(sorted(registry.training_recipes)) or 'none'}")
            print("run `saecore train --arch NAME --help` for the options of one architecture")
            return [], "", {}, True
        _check_no_misspelled_sections(file_data, pre.config)
        raise ConfigError(
            f"--arch is required; installed training recipes: {', '.join(sorted(registry.training_recipes)) or 'none'}"
        )
    source = pre.source or file_data.get("source") or DEFAULT_SOURCE
    parser, table = build_parser(archs, source, pre.config, file_data)
    if pre.help:
        parser.print_help()
        return archs, source, {}, True
    args = parser.parse_args(argv)
    sections: dict[str, dict[str, Any]] = {"source_config": {}, "trainer": {}, "logger": {}, "sweep": {}}
    sections.update({f"sae:{arch}": {} for arch in archs})
    placement = args.sae_placement or file_data.get("sae_placement")
    if placement is not None:
        if len(archs) == 1:
            where = "--sae-placement" if args.sae_placement else f"{pre.config}: sae_placement"
            raise ConfigError(f"{where} places several SAEs over the ranks, but only {archs[0]!r} is trained; "
                              "give several --arch or use a sweep file")
        sections["sweep"]["sae_placement"] = placement
    for key, value in file_data.items():
        if key in ("sae", "source_config", "logger"):
            if not isinstance(value, dict):
                raise ConfigError(f"{pre.config}: '{key}' must be a mapping")
            targets = [f"sae:{arch}" for arch in archs] if key == "sae" else [key]
            for section in targets:
                sections[section].update(_fields_of(section, value, archs))
            if key == "sae" and len(archs) > 1:
                _check_sae_keys_used(value, archs, pre.config)
        elif key not in FILE_SECTIONS:
            if key not in table.targets:
                raise ConfigError(f"{pre.config}: unknown setting {key!r}; allowed top-level keys: arch, source, sae, "
                                  f"source_config, logger, sae_placement, and trainer fields "
                                  f"({', '.join(sorted(_trainer_fields()))})")
            sections["trainer"][key] = value
    for section, values in table.values_by_section(args).items():
        sections[section].update(values)
    return archs, source, sections, False


def _check_no_misspelled_sections(file_data: dict[str, Any], config_path: str | None) -> None:
    """A file key close to a section name (``archh:``) is a typo, and the likely cause of what is missing."""
    for key in file_data:
        close = difflib.get_close_matches(str(key), sorted(FILE_SECTIONS), n=1, cutoff=0.75)
        if key not in FILE_SECTIONS and close:
            raise ConfigError(f"--config {config_path}: unknown key {key!r} (did you mean {close[0]!r}?)")


def _chosen_archs(flags: list[str] | None, from_file: Any, config_path: str | None) -> list[str]:
    archs = flags if flags else ([from_file] if isinstance(from_file, str) else list(from_file or []))
    if not all(isinstance(arch, str) for arch in archs):
        raise ConfigError(f"{config_path}: 'arch' must be a name or a list of names, got {from_file!r}")
    repeated = sorted({arch for arch in archs if archs.count(arch) > 1})
    if repeated:
        raise ConfigError(f"--arch {repeated[0]} is given twice; to train several SAEs of one architecture with "
                          "different settings, use a sweep file (saecore train --sweep FILE)")
    return archs


def _check_sae_keys_used(values: dict[str, Any], archs: list[str], config_path: str | None) -> None:
    registry = get_registry()
    known = {name for arch in archs for name in registry.training_recipe(arch).training_config_class.model_fields}
    unused = sorted(set(values) - known)
    if unused:
        raise ConfigError(f"{config_path}: sae.{unused[0]} is not an option of any chosen architecture "
                          f"({', '.join(archs)})")


def _fields_of(section: str, values: dict[str, Any], archs: list[str]) -> dict[str, Any]:
    """A file's ``sae`` keys for one architecture: with several, each takes the keys its config has."""
    if not section.startswith("sae:") or len(archs) == 1:
        return values
    fields = get_registry().training_recipe(section.removeprefix("sae:")).training_config_class.model_fields
    return {key: value for key, value in values.items() if key in fields}


def _trainer_fields() -> list[str]:
    from saecore.training import TrainerConfig

    return list(TrainerConfig.model_fields)


def run_from_argv(argv: list[str]) -> int:
    from saecore.distributed import local_device

    pre, _ = _pre_parser().parse_known_args(argv)
    if pre.sweep is not None:
        return _run_sweep_file(pre.sweep, argv)
    archs, source_name, sections, printed_help = collect_settings(argv)
    if printed_help:
        return 0
    source_entry = get_registry().source(source_name)
    trainer = sections["trainer"]
    source_cfg = validate_model(source_entry.config_class, sections["source_config"], f"source {source_name!r}")
    from saecore.training import TrainerConfig

    # The source is seeded before the run config is built: check the seed (and device) first.
    checked = validate_model(TrainerConfig, {k: v for k, v in trainer.items() if k in ("seed", "device")},
                             "trainer options")
    seed, device = checked.seed, checked.device
    source = source_entry.source_class(source_cfg, seed=seed, device=str(local_device(device)))
    try:
        if len(archs) == 1:
            return _train_one(archs[0], source_name, source, source_cfg, sections)
        return _train_together(archs, source_name, source, source_cfg, sections)
    except TrainingInterruptedError as error:
        flag = f"--resume-from-checkpoint {shlex.quote(str(error.checkpoint))}"
        print(f"saecore: {error.describe(f'the same command and {flag}')}", file=sys.stderr)
        return 130
    finally:
        source.close()


def _run_config(arch: str, source_name: str, source: Any, source_cfg: Any, sections: dict[str, dict[str, Any]],
                trainer: dict[str, Any]) -> Any:
    """One architecture's validated runner config; ``trainer`` gains the architecture's presets."""
    from saecore.training import LoggingConfig, TrainingRunnerConfig

    recipe = get_registry().training_recipe(arch)
    sae_values = apply_presets(arch, source_name, source.d_in, sections[f"sae:{arch}"], trainer, source.target_width)
    sae_cfg = validate_model(recipe.training_config_class, sae_values, f"SAE options for {arch!r}")
    logger = validate_model(LoggingConfig, sections["logger"], "logging options")
    return validate_model(TrainingRunnerConfig, {**trainer, "sae": sae_cfg, "source": source_cfg, "logger": logger},
                          "trainer options")


OUTPUT_DEFAULTS = {
    "output_path": "default: a new folder under saecore_runs/",
    "checkpoint_path": "default: checkpoints/ inside the output folder",
}
SWEEP_OUTPUT_DEFAULTS = {
    "output_path": "default: a new folder under saecore_runs/, one subfolder per architecture",
    "checkpoint_path": "default: checkpoints/ inside the output folder, shared by the architectures",
}


def _default_output_paths(trainer: dict[str, Any], run_name: str) -> None:
    """A fresh run folder by default; checkpoints inside it (or in its place with ``--output-path null``)."""
    run_folder = default_run_folder(run_name)
    trainer.setdefault("output_path", str(run_folder))
    output = trainer["output_path"]
    trainer.setdefault("checkpoint_path", str(Path(output if output is not None else run_folder) / "checkpoints"))


def _train_one(arch: str, source_name: str, source: Any, source_cfg: Any, sections: dict[str, dict[str, Any]]) -> int:
    from saecore.training import TrainingRunner

    trainer = sections["trainer"]
    _default_output_paths(trainer, arch)
    cfg = _run_config(arch, source_name, source, source_cfg, sections, trainer)
    runner = TrainingRunner(cfg, source=source)
    runner.run()
    if runner.is_main_process:
        assert runner.summary is not None
        print(runner.summary.format(), file=sys.stdout)
    return 0


def _train_together(
    archs: list[str], source_name: str, source: Any, source_cfg: Any, sections: dict[str, dict[str, Any]]
) -> int:
    """One SAE per architecture on one stream; settings the SAEs must share come from the flags or the first."""
    from saecore.training import SAESweepConfig, SAESweepRunner, SweepMember
    from saecore.training.sweep_config import SHARED_FIELDS

    given = dict(sections["trainer"])
    _default_output_paths(given, "sweep")
    trainers = []
    for arch in archs:
        output = given["output_path"]
        trainer = {**given, "output_path": None if output is None else str(Path(output) / arch)}
        apply_presets(arch, source_name, source.d_in, {}, trainer, source.target_width)
        trainers.append(trainer)
    for trainer in trainers[1:]:
        for field in SHARED_FIELDS:
            if field in trainers[0]:
                trainer[field] = trainers[0][field]
    members = [
        SweepMember(name=arch, run=_run_config(arch, source_name, source, source_cfg, sections, trainer))
        for arch, trainer in zip(archs, trainers)
    ]
    sweep = validate_model(SAESweepConfig, {"members": members, **sections["sweep"]}, "sweep")
    runner = SAESweepRunner(sweep, source=source)
    runner.run()
    if runner.is_main_process:
        _print_summaries(runner.summaries)
    return 0


def _run_sweep_file(path: str, argv: list[str]) -> int:
    from saecore.training import SAESweepConfig, SAESweepRunner

    extra = [arg for arg in argv if arg not in ("--sweep", path) and not arg.startswith("--sweep=")]
    if extra:
        raise ConfigError(f"--sweep {path} takes all settings from the file; remove {' '.join(extra)} "
                          "(or put them in the file)")
    cfg = SAESweepConfig.from_dict({**CLI_TRAINER_DEFAULTS, **read_config_file(path, "--sweep")}, where=path)
    runner = SAESweepRunner(cfg)
    try:
        runner.run()
    except TrainingInterruptedError as error:
        print(f"saecore: {error.describe(f'resume_from_checkpoint: {error.checkpoint} in {path}')}", file=sys.stderr)
        return 130
    if runner.is_main_process:
        _print_summaries(runner.summaries)
    return 0


def _print_summaries(summaries: dict[str, Any]) -> None:
    for name, summary in summaries.items():
        print(f"== {name}", file=sys.stdout)
        print(summary.format(), file=sys.stdout)
