"""A sweep: several SAEs trained together on one activation stream.

Each SAE of a sweep has a complete :class:`TrainingRunnerConfig`, so it may differ
from the others in architecture, width, coefficients, learning rate and schedule, and
its output folder holds an ordinary saved SAE with its own runner_cfg.json. What decides
which batches are drawn, and when, must be the same for all of them, because they read
one stream (``SHARED_FIELDS``); the validator names the first field that differs.

In a file, a sweep is a base run config plus a ``sweep`` list of per-SAE overrides
(nested sections are merged key by key)::

    training_tokens: 2000000
    source: {name: llm, model_name: gpt2, hook_name: blocks.6.hook_resid_post}
    sae: {architecture: topk, d_in: 768, d_sae: 16384, k: 32}
    sweep:
      - {name: topk-k32}
      - {name: topk-k64, sae: {k: 64}}
      - {name: relu, sae: {architecture: standard, l1_coefficient: 5}, lr: 1e-4}

When an entry changes the architecture, the base ``sae`` keys the new architecture does
not have (``k`` above) are left out rather than refused. ``sae_placement``, a key beside
``sweep``, is a setting of the sweep as a whole (where its SAEs live under torchrun).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from saecore.config.validation import validate_model
from saecore.errors import ConfigError
from saecore.training.runner_config import TrainingRunnerConfig, jsonable_fields

SHARED_FIELDS = (
    "training_tokens",
    "train_batch_size_tokens",
    "n_batches_for_norm_estimate",
    "n_eval_batches",
    "n_checkpoints",
    "checkpoint_path",
    "resume_from_checkpoint",
    "device",
    "seed",
    "verbose",
    "distributed_timeout_s",
    "distributed_sharding",
)
SHARED_LOGGER_FIELDS = ("log_to_wandb", "wandb_log_frequency", "eval_every_n_wandb_logs")
SWEEP_KEY = "sweep"
PLACEMENT_KEY = "sae_placement"
SAEPlacement = Literal["replicate", "partition"]
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SweepMember(BaseModel):
    """One SAE of a sweep: its name (its folder), the stream it reads, its run config."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Names the SAE's output and checkpoint folders; letters, digits, '_', '-', '.'.")
    stream: str | None = Field(
        default=None,
        description="The source stream (hook) this SAE reads; None when the source serves a single stream.",
    )
    run: TrainingRunnerConfig

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} must be a folder name: letters, digits, '_', '-' and '.', not first '.'")
        return value


class SAESweepConfig(BaseModel):
    """The SAEs of a sweep, in the order they step (and checkpoint) each batch."""

    model_config = ConfigDict(extra="forbid")

    members: list[SweepMember] = Field(min_length=1)
    sae_placement: SAEPlacement = Field(
        default="replicate",
        description=(
            "Under torchrun with W ranks: 'replicate' trains every SAE on every rank, data-parallel; 'partition' "
            "gives rank r the SAEs r, r+W, r+2W, ... (at least one each), trained on whole global batches that "
            "the ranks' sources share out and all-gather. One process trains all SAEs either way."
        ),
    )

    @model_validator(mode="after")
    def _members_agree(self) -> SAESweepConfig:
        names = [member.name for member in self.members]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"every SAE of a sweep needs its own name; repeated: {', '.join(repeated)}")
        first = self.members[0]
        for member in self.members[1:]:
            for field in SHARED_FIELDS:
                _require_equal(field, getattr(first.run, field), getattr(member.run, field), first.name, member.name)
            for field in SHARED_LOGGER_FIELDS:
                _require_equal(f"logger.{field}", getattr(first.run.logger, field), getattr(member.run.logger, field),
                               first.name, member.name)
            _require_equal("source", _source_identity(first.run), _source_identity(member.run),
                           first.name, member.name)
        return self

    @property
    def first(self) -> TrainingRunnerConfig:
        """The shared settings (any member's; they agree)."""
        return self.members[0].run

    def members_of_rank(self, rank: int, world_size: int) -> list[int]:
        """Indices of the members ``rank`` trains: all of them, or its round-robin share under 'partition'."""
        if self.sae_placement == "replicate" or world_size == 1:
            return list(range(len(self.members)))
        n_saes = len(self.members)
        if n_saes < world_size:
            raise ConfigError(
                f"sae_placement='partition' gives each of the {world_size} ranks at least one SAE, but the sweep has "
                f"{n_saes} SAE{'s' if n_saes != 1 else ''}; run at most {n_saes} ranks (torchrun --nproc_per_node "
                f"{n_saes}), add SAEs, or set sae_placement='replicate' (every rank trains every SAE)"
            )
        return list(range(rank, n_saes, world_size))

    def group_checkpoint(self, n_tokens: int) -> Path:
        """Where the sweep's checkpoint after ``n_tokens`` lives: one subfolder per SAE."""
        return Path(self.first.checkpoint_path) / str(n_tokens)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "sweep config") -> SAESweepConfig:
        """A base run config, a ``sweep`` list of per-SAE overrides, optionally ``sae_placement`` (module docstring)."""
        base = dict(values)
        entries = base.pop(SWEEP_KEY, None)
        sweep_settings = {PLACEMENT_KEY: base.pop(PLACEMENT_KEY)} if PLACEMENT_KEY in base else {}
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{where}: '{SWEEP_KEY}' must be a non-empty list of per-SAE settings with a 'name'")
        members = [_member_from_override(base, entry, where, index) for index, entry in enumerate(entries)]
        config: SAESweepConfig = validate_model(cls, {"members": members, **sweep_settings}, where)
        return config


def _source_identity(run: TrainingRunnerConfig) -> tuple[str, dict[str, Any]]:
    return type(run.source).__name__, jsonable_fields(run.source)


def _require_equal(field: str, first: Any, other: Any, first_name: str, other_name: str) -> None:
    if first != other:
        raise ValueError(
            f"{field} must be the same for every SAE of a sweep, because they read one activation stream; "
            f"{first_name!r} has {first!r} and {other_name!r} has {other!r}"
        )


def _member_from_override(base: Mapping[str, Any], entry: Any, where: str, index: int) -> SweepMember:
    if not isinstance(entry, Mapping) or "name" not in entry:
        raise ConfigError(f"{where}: {SWEEP_KEY}[{index}] must be a mapping with a 'name' (got {entry!r})")
    override = dict(entry)
    name, stream = override.pop("name"), override.pop("stream", None)
    if "source" in override:
        raise ConfigError(f"{where}: {SWEEP_KEY}[{index}] ({name!r}) sets 'source', but the SAEs of a sweep share "
                          "the top-level source; choose the SAE's hook with 'stream'")
    merged = merge_settings(base, override)
    merged.setdefault("output_path", base.get("output_path", "output"))
    if "output_path" not in override and merged["output_path"] is not None:
        merged["output_path"] = str(Path(merged["output_path"]) / str(name))
    logger = dict(merged.get("logger") or {})
    if not (override.get("logger") or {}).get("run_name"):
        logger["run_name"] = f"{logger['run_name']}-{name}" if logger.get("run_name") else str(name)
    merged["logger"] = logger
    run = TrainingRunnerConfig.from_dict(merged)
    return SweepMember(name=name, stream=stream, run=run)


def merge_settings(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, nested sections key by key.

    If ``override`` names another SAE architecture, base ``sae`` keys that architecture's
    config does not have are dropped (a sweep over architectures shares d_in and d_sae,
    not k or l1_coefficient).
    """
    merged = {key: dict(value) if isinstance(value, Mapping) else value for key, value in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    base_sae, override_sae = base.get("sae") or {}, override.get("sae") or {}
    architecture = override_sae.get("architecture")
    if architecture is not None and architecture != base_sae.get("architecture"):
        from saecore.registry import get_registry

        fields = get_registry().training_recipe(architecture).training_config_class.model_fields
        merged["sae"] = {key: value for key, value in merged["sae"].items()
                         if key in fields or key in override_sae or key == "architecture"}
    return merged
