"""``saecore cache --source NAME --output DIR --training-tokens N [--<source field> VALUE ...]``.

Draws ``N`` activations from any registered source and writes them as a cache folder
(safetensors shards + ``cache_info.json``) that the core's ``cached`` source reads, so
many SAEs can train on one set of activations without running the model again.

Memory stays bounded whatever N is: activations are drawn ``batch_size_tokens`` at a
time and each shard is written as soon as it fills. The draws are cut at shard
boundaries, so every finished shard holds exactly the activations drawn since the last
one. After each shard, ``cache_progress.pt`` records (atomically) the tokens written,
the shards and the source's ``state_dict()``; re-running the same command continues from
there, and because the draws restart at a shard boundary in the same pattern, a resumed
cache equals one written in a single go. A finished cache is left as it is. Any shuffling
is the source's own (the llm source's mixing buffer); the shards hold what it serves, in
order. The cache records the source's ``sae_metadata()`` and its streams with each one's
``stream_metadata`` (an llm source reading several hooks serves them side by side), and
its ``target_width`` (a source of (input, target) pairs, such as the llm source with
``--hook-name-out``), so the ``cached`` source reports the same streams, metadata and pairs
as the source.

``--format saelens`` writes SAELens's layout instead (a Hugging Face dataset of prompts,
what its ``CacheActivationsRunner`` writes) through the source's ``write_saelens_cache``;
only a source that serves prompts (the llm source) can, and that cache is written in one go.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import BaseModel, ConfigDict, Field

from saecore.cli.model_flags import FlagTable, FriendlyArgumentParser
from saecore.errors import ConfigError, SAEFileError
from saecore.registry import get_registry
from saecore.sources.base import ActivationSource
from saecore.sources.cached import (
    CACHE_INFO_FILE,
    CachedActivationsWriter,
    ShardInfo,
    read_cache_info,
    source_streams,
)

USAGE = "saecore cache --source NAME --output DIR --training-tokens N [--<source field> VALUE ...]"
PROGRESS_FILE = "cache_progress.pt"


class CacheOptions(BaseModel):
    """The command's own settings (a source field of the same name is set too)."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field(description="Folder the cache is written to (and resumed from).")
    training_tokens: int = Field(gt=0, description="Activations to cache.")
    batch_size_tokens: int = Field(default=4096, gt=0, description="Activations drawn from the source at a time.")
    shard_size_tokens: int = Field(default=65_536, gt=0, description="Activations per shard file.")
    dtype: str = Field(default="float32", description="Storage dtype: float32, float16 or bfloat16.")
    seed: int = Field(default=42, ge=0, lt=2**32, description="Seeds torch and the source's shuffling.")
    device: str = Field(default="cpu", description="Device the source computes activations on.")
    format: Literal["saecore", "saelens"] = Field(
        default="saecore",
        description="Cache layout: saecore's resumable safetensors shards, or SAELens's Hugging Face dataset of "
        "prompts (what SAELens's CacheActivationsRunner writes; sources that serve prompts only; not resumable).",
    )


class _ContinuingWriter(CachedActivationsWriter):
    """A writer that keeps the first shards of an existing cache folder and appends after them.

    Shards past ``kept`` were written after the last recorded progress; they are written
    again (same names, same contents) as the source reproduces them.
    """

    def __init__(self, path: Path, d_in: int, *, kept: list[ShardInfo], **options: Any) -> None:
        super().__init__(path, d_in, **options)
        self._shards = list(kept)

    def _prepare_folder(self, overwrite: bool) -> None:
        self.path.mkdir(parents=True, exist_ok=True)


def add_parser(commands: Any, name: str) -> None:
    commands.add_parser(name, add_help=False,
                        help="write a source's activations to disk shards (saecore cache --source NAME --help)")


def _pre_parser() -> argparse.ArgumentParser:
    parser = FriendlyArgumentParser(prog="saecore cache", add_help=False)
    parser.add_argument("--source", default=None)
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def build_parser(source: str) -> tuple[argparse.ArgumentParser, FlagTable]:
    entry = get_registry().source(source)
    parser = FriendlyArgumentParser(
        prog="saecore cache",
        description=f"Write activations from the {source!r} source to a cache folder the 'cached' source reads. "
                    "Re-running the same command resumes an interrupted cache.",
    )
    parser.add_argument("--source", default=source, help=f"activation source; installed: {_sources()}")
    table = FlagTable()
    table.add_section(parser, "cache", "cache options", CacheOptions)
    table.add_section(parser, "source_config", f"source options ({source}, from {entry.config_class.__name__})",
                      entry.config_class)
    return parser, table


def _sources() -> str:
    return ", ".join(sorted(get_registry().sources)) or "none"


def run_identity(source_name: str, source_cfg: BaseModel, options: CacheOptions) -> str:
    """What must not change between an interrupted run and its continuation (as JSON)."""
    settings = options.model_dump(exclude={"output", "device"})
    config = source_cfg.model_dump(mode="json", exclude={"verbose"},
                                   fallback=lambda value: f"<{type(value).__name__}>")
    return json.dumps({"source": source_name, "source_config": config, **settings}, sort_keys=True)


def _differences(saved: str, current: str) -> str:
    old, new = json.loads(saved), json.loads(current)
    old_config, new_config = old.pop("source_config", {}), new.pop("source_config", {})
    changed = [f"{key} {old.get(key)!r} → {new.get(key)!r}" for key in sorted(set(old) | set(new))
               if old.get(key) != new.get(key)]
    changed += [f"{key} {old_config.get(key)!r} → {new_config.get(key)!r}"
                for key in sorted(set(old_config) | set(new_config)) if old_config.get(key) != new_config.get(key)]
    return ", ".join(changed)


class CacheRun:
    """Writes (or continues) one cache folder from one source."""

    def __init__(self, source: ActivationSource, source_name: str, options: CacheOptions, identity: str,
                 stream: TextIO | None = None) -> None:
        self.source = source
        self.source_name = source_name
        self.options = options
        self.identity = identity
        self.folder = Path(options.output).expanduser()
        self.stream = stream if stream is not None else sys.stderr

    def run(self) -> int:
        """Write the remaining activations; returns the number of tokens in the finished cache."""
        import torch

        progress = self._read_progress()
        if progress is None:
            if (self.folder / CACHE_INFO_FILE).exists():
                raise SAEFileError(f"{self.folder} already holds an activation cache that saecore cache did not "
                                   f"write (no {PROGRESS_FILE}); choose another --output")
            written, shards = 0, []
            self.folder.mkdir(parents=True, exist_ok=True)
            self._save_progress(written, shards, finished=False)
        else:
            written = int(progress["n_tokens"])
            shards = [ShardInfo(str(name), int(size))
                      for name, size in zip(progress["shard_files"], progress["shard_tokens"])]
            if bool(progress["finished"]):
                print(f"cache: {self.folder} is complete ({written:,} tokens); nothing to do", file=self.stream)
                return written
            self.source.load_state_dict(progress["source_state"])
            print(f"cache: continuing {self.folder} at {written:,} / {self.options.training_tokens:,} tokens",
                  file=self.stream)
        writer = _ContinuingWriter(
            self.folder, self.source.d_in, kept=shards, dtype=self.options.dtype,
            shard_size_tokens=self.options.shard_size_tokens, metadata=self.source.sae_metadata(),
            streams=source_streams(self.source), target_width=self.source.target_width,
        )
        started, first = time.perf_counter(), written
        total, shard_size = self.options.training_tokens, self.options.shard_size_tokens
        with torch.no_grad():
            while written < total:
                take = min(self.options.batch_size_tokens, shard_size - written % shard_size, total - written)
                writer.append(self.source.next_batch(take))
                written += take
                if written % shard_size == 0 and written < total:  # the writer has just written a full shard
                    self._save_progress(written, list(read_cache_info(self.folder).shards), finished=False)
                    self._report(written, started, first)
        writer.close()
        self._save_progress(written, list(read_cache_info(self.folder).shards), finished=True)
        self._report(written, started, first)
        return written

    def _report(self, written: int, started: float, first: int) -> None:
        seconds = time.perf_counter() - started
        rate = (written - first) / seconds if seconds > 0 else 0.0
        total = self.options.training_tokens
        print(f"cache: {written:,} / {total:,} tokens ({100 * written / total:.1f}%), {rate:,.0f} tokens/s",
              file=self.stream)

    def _read_progress(self) -> dict[str, Any] | None:
        import torch

        path = self.folder / PROGRESS_FILE
        if not path.is_file():
            return None
        try:
            progress: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise SAEFileError(f"{path}: cannot be read ({type(error).__name__}: {error}); delete the folder "
                               "to start the cache again") from None
        if progress["identity"] != self.identity:
            raise ConfigError(f"{self.folder} holds a cache made with other settings "
                              f"({_differences(progress['identity'], self.identity)}); re-run with the original "
                              "settings to continue it, or choose another --output")
        return progress

    def _save_progress(self, written: int, shards: list[ShardInfo], *, finished: bool) -> None:
        from saecore.io.atomic import write_atomically
        from saecore.training.checkpoint import serialize_weights_only

        state = {
            "identity": self.identity,
            "n_tokens": written,
            "finished": finished,
            "shard_files": [shard.file for shard in shards],
            "shard_tokens": [shard.n_tokens for shard in shards],
            "source_state": {} if finished else self.source.state_dict(),
        }
        data = serialize_weights_only(state, f"the cache progress of the {self.source_name!r} source")
        write_atomically(self.folder / PROGRESS_FILE, lambda tmp: tmp.write_bytes(data))


def cache_activations(source_name: str, source_values: Mapping[str, Any], options: CacheOptions,
                      stream: TextIO | None = None) -> int:
    """Build the source and write (or continue) the cache; returns the tokens in the finished cache."""
    from saecore.config.validation import validate_model
    from saecore.training.rng import seed_everything

    entry = get_registry().source(source_name)
    source_cfg = validate_model(entry.config_class, dict(source_values), f"source {source_name!r}")
    seed_everything(options.seed)
    source = entry.source_class(source_cfg, seed=options.seed, device=options.device)
    try:
        if options.format == "saelens":
            return source.write_saelens_cache(Path(options.output).expanduser(), options.training_tokens,
                                              options.dtype)
        source.check_batch_size(min(options.batch_size_tokens, options.training_tokens))
        return CacheRun(source, source_name, options, run_identity(source_name, source_cfg, options), stream).run()
    finally:
        source.close()


def run_from_argv(argv: list[str]) -> int:
    from saecore.config.validation import validate_model

    pre, _ = _pre_parser().parse_known_args(argv)
    if pre.source is None:
        if pre.help:
            print(f"usage: {USAGE}")
            print(f"installed sources: {_sources()}")
            print("run `saecore cache --source NAME --help` for the options of one source")
            return 0
        raise ConfigError(f"--source is required: the source to cache activations from (installed: {_sources()})")
    parser, table = build_parser(pre.source)
    if pre.help:
        parser.print_help()
        return 0
    sections = table.values_by_section(parser.parse_args(argv))
    options = validate_model(CacheOptions, sections.get("cache", {}), "cache options")
    n_tokens = cache_activations(pre.source, sections.get("source_config", {}), options)
    print(f"{n_tokens:,} activations cached in {Path(options.output).expanduser()} "
          f"(train on them with: saecore train --source cached --path {options.output} ...)")
    return 0
