"""SAELens 6.54's multi-SAE runner: several SAEs trained together on one language model's forward passes.

``MultiSAETrainingRunnerConfig`` has SAELens's shape: ``saes`` maps names to training
SAE configs (architectures may differ), ``hook_names`` maps the same names to hooks (or
is one hook for all), and the language-model, trainer and logging fields are those of
``LanguageModelSAERunnerConfig``. It maps onto the core's sweep: one ``llm`` source
reading every distinct hook in one forward pass (the first SAE's hook first, then the
others in order), one sweep member per SAE reading its hook's stream, each saved to
``{output_path}/{name}``. ``MultiSAETrainingRunner(cfg).run()`` returns the trained SAEs
by name, as in SAELens. ``hook_names_out`` (saecore's) names each transcoder's output hook:
its input hook's stream is then an (input, target) pair read in the same forward pass.

Differences, each for a reason: a custom ``evaluator`` is refused (saecore runs its own
evaluations, the CE-loss and KL scores with the SAE spliced in); a ``hook_head_indices``
entry must be shared by every SAE and needs a single hook (the ``llm`` source narrows one
hook to one head).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, SerializeAsAny, field_validator, model_validator

from saecore.config.sae_config import TrainingSAEConfig
from saecore.training import (
    LoggingConfig,
    SAESweepConfig,
    SAESweepRunner,
    SweepMember,
    TrainerConfig,
    TrainingRunnerConfig,
)
from saecore.training_sae import TrainingSAE
from saecore.version import SAELENS_VERSION
from saecore_source_llm.config import LanguageModelFields, LLMSourceConfig
from saecore_source_llm.runner import (
    DEAD_FEATURE_THRESHOLD_DEFAULT,
    LanguageModelSAERunnerConfig,
    reject_unknown_fields,
    warn_dead_feature_threshold,
)

SINGLE_HOOK_FIELDS = ("hook_name", "additional_hook_names", "hook_head_index", "hook_name_out",
                      "additional_hook_names_out")


class MultiSAETrainingRunnerConfig(TrainerConfig, LanguageModelFields):
    """Several SAEs, each on a hook of one language model, trained from shared forward passes."""

    saes: dict[str, SerializeAsAny[TrainingSAEConfig]] = Field(
        min_length=1, description="Each SAE's name (its output folder) and training config."
    )
    model_config = ConfigDict(populate_by_name=True)

    # Stored under another name: ``hook_names`` is also the language-model fields' list of hooks read.
    hook_names_by_sae: dict[str, str] | str = Field(
        alias="hook_names", description="Each SAE's hook, by name; one string: every SAE's hook."
    )
    hook_names_out: dict[str, str] = Field(
        default_factory=dict,
        description="Each transcoder's output hook (its target), by SAE name; SAEs not named read inputs only.",
    )
    hook_head_indices: dict[str, int | None] | int | None = Field(
        default=None, description="A head of a per-head hook (hook_z ...), shared by every SAE; None flattens heads."
    )
    logger: LoggingConfig = Field(default_factory=LoggingConfig)
    dtype: str = Field(default="float32", description="The SAEs' dtype unless an SAE config sets one.")
    evaluator: Any = Field(default=None, description="SAELens's per-SAE evaluator callable; not supported (None).")
    dead_feature_threshold: float = Field(
        default=DEAD_FEATURE_THRESHOLD_DEFAULT, description="Accepted and ignored, as in SAELens 6.54."
    )
    sae_lens_version: str = Field(default=SAELENS_VERSION, description="Recorded, as in SAELens.")
    sae_lens_training_version: str = Field(default=SAELENS_VERSION, description="Recorded, as in SAELens.")

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields_named_with_close_matches(cls, values: Any) -> Any:
        """As in SAELens, each SAE's hook is in ``hook_names``: the single-hook fields are unknown here."""
        known = {name: None for name in cls.model_fields if name not in SINGLE_HOOK_FIELDS}
        return reject_unknown_fields(values, {**known, "hook_names": None})

    @field_validator("saes", mode="before")
    @classmethod
    def _saes_from_mappings(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {name: LanguageModelSAERunnerConfig._sae_from_mapping(sae) for name, sae in value.items()}

    @field_validator("evaluator")
    @classmethod
    def _no_custom_evaluator(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError("a custom per-SAE evaluator is not supported: saecore evaluates each SAE spliced into "
                             "the model at its hook (CE loss, KL); leave evaluator=None")
        return value

    @model_validator(mode="after")
    def _hooks_fit_the_saes(self) -> MultiSAETrainingRunnerConfig:
        names = set(self.saes)
        hooks = self.hook_names_by_sae
        if isinstance(hooks, dict) and set(hooks) != names:
            raise ValueError(f"hook_names keys must match saes keys; extra: {sorted(set(hooks) - names)}; "
                             f"missing: {sorted(names - set(hooks))}")
        self._check_output_hooks()
        if isinstance(self.hook_head_indices, dict) and not set(self.hook_head_indices) <= names:
            raise ValueError(f"hook_head_indices has keys that are not SAEs: "
                             f"{sorted(set(self.hook_head_indices) - names)}")
        widths: dict[str, tuple[str, int]] = {}
        for name, hook in self.hook_names_per_sae.items():
            d_in = self.saes[name].d_in
            first = widths.setdefault(hook, (name, d_in))
            if first[1] != d_in:
                raise ValueError(f"SAEs sharing hook {hook!r} must have the same d_in; {first[0]!r} has {first[1]}, "
                                 f"{name!r} has {d_in}")
        if len(set(self.hook_head_indices_per_sae.values())) > 1:
            raise ValueError(f"hook_head_indices={self.hook_head_indices}: every SAE must read the same head "
                             "(the llm source narrows its hook to one head)")
        if self.head_index is not None and len(self.unique_hooks) > 1:
            raise ValueError(f"hook_head_indices={self.hook_head_indices} needs a single hook, but hook_names "
                             f"names {len(self.unique_hooks)}")
        self.check_train_batch_size(self.train_batch_size_tokens)
        warn_dead_feature_threshold(self.dead_feature_threshold)
        return self

    def _check_output_hooks(self) -> None:
        """Each input hook is one stream of the llm source: every SAE on it predicts the same target, or none."""
        unknown = sorted(set(self.hook_names_out) - set(self.saes))
        if unknown:
            raise ValueError(f"hook_names_out has keys that are not SAEs: {unknown}")
        for name, sae in self.saes.items():
            if sae.PREDICTS_TARGET != (name in self.hook_names_out):
                needs = "needs an output hook in hook_names_out" if sae.PREDICTS_TARGET else "is not a transcoder"
                raise ValueError(f"SAE {name!r} ({sae.architecture()}) {needs}: hook_names_out names the output hook "
                                 "of each transcoder and of nothing else")
        targets: dict[str, tuple[str, str | None]] = {}
        for name, hook in self.hook_names_per_sae.items():
            target = self.hook_names_out.get(name)
            first, first_target = targets.setdefault(hook, (name, target))
            if first_target != target:
                raise ValueError(f"SAEs sharing hook {hook!r} must predict the same output hook; {first!r} has "
                                 f"{first_target!r}, {name!r} has {target!r} (hook_names_out)")
        inputs = set(self.hook_names_per_sae.values())
        for name, target in self.hook_names_out.items():
            if target in inputs:
                raise ValueError(f"hook_names_out[{name!r}]={target!r} is also an SAE's input hook; an output hook "
                                 "is read as a target only")

    @property
    def hook_names(self) -> Any:  # type: ignore[override]
        """SAELens's field: each SAE's hook by name, or one hook for all."""
        return self.hook_names_by_sae

    @property
    def hook_names_per_sae(self) -> dict[str, str]:
        hooks = self.hook_names_by_sae
        if isinstance(hooks, str):
            return {name: hooks for name in self.saes}
        return {name: hooks[name] for name in self.saes}

    @property
    def hook_head_indices_per_sae(self) -> dict[str, int | None]:
        if self.hook_head_indices is None or isinstance(self.hook_head_indices, int):
            return {name: self.hook_head_indices for name in self.saes}
        return {name: self.hook_head_indices.get(name) for name in self.saes}

    @property
    def unique_hooks(self) -> list[str]:
        """Every hook read, in the order of the SAEs that first name them."""
        return list(dict.fromkeys(self.hook_names_per_sae.values()))

    @property
    def head_index(self) -> int | None:
        return next(iter(self.hook_head_indices_per_sae.values()))

    def source_config(self, *, model: Any = None, dataset: Any = None) -> LLMSourceConfig:
        """One ``llm`` source reading every hook in one forward pass."""
        values = {name: getattr(self, name) for name in LanguageModelFields.model_fields
                  if name in self.model_fields_set}
        first, *others = self.unique_hooks
        targets = {self.hook_names_per_sae[name]: target for name, target in self.hook_names_out.items()}
        values.update(verbose=self.verbose, hook_name=first, additional_hook_names=others,
                      hook_head_index=self.head_index, hook_name_out=targets.get(first),
                      additional_hook_names_out={hook: targets[hook] for hook in others if hook in targets})
        if model is not None:
            values["model"] = model
        if dataset is not None:
            values["dataset"] = dataset
        return LLMSourceConfig(**values)

    def to_sweep_config(self, *, model: Any = None, dataset: Any = None) -> SAESweepConfig:
        """The core sweep: one member per SAE, on its hook's stream, saved to ``{output_path}/{name}``."""
        source = self.source_config(model=model, dataset=dataset)
        trainer = {name: getattr(self, name) for name in TrainerConfig.model_fields if name in self.model_fields_set}
        several = len(self.unique_hooks) > 1
        members = []
        for name, sae in self.saes.items():
            sae_cfg = sae if "dtype" in sae.model_fields_set else sae.model_copy(update={"dtype": self.dtype})
            output = None if self.output_path is None else f"{self.output_path}/{name}"
            run = TrainingRunnerConfig(sae=sae_cfg, source=source, logger=self.logger,
                                       **{**trainer, "output_path": output})
            members.append(SweepMember(name=name, stream=self.hook_names_per_sae[name] if several else None, run=run))
        return SAESweepConfig(members=members)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (objects become placeholders)."""
        result = self.model_dump(mode="json", exclude={"saes", "evaluator", *SINGLE_HOOK_FIELDS}, by_alias=True,
                                 fallback=lambda value: f"<{type(value).__name__}>")
        result["saes"] = {name: sae.to_dict() for name, sae in self.saes.items()}
        return result


class MultiSAETrainingRunner:
    """Trains every SAE of ``cfg`` from shared forward passes of the language model.

    ``override_model`` / ``override_dataset`` replace the model and dataset ``cfg`` names;
    ``override_saes`` (one training SAE per name of ``cfg.saes``) are trained instead of
    fresh ones, each with its own config.
    """

    def __init__(
        self,
        cfg: MultiSAETrainingRunnerConfig,
        override_dataset: Any = None,
        override_model: Any = None,
        override_saes: Mapping[str, TrainingSAE[Any]] | None = None,
    ) -> None:
        if override_saes is not None and set(override_saes) != set(cfg.saes):
            extra, missing = sorted(set(override_saes) - set(cfg.saes)), sorted(set(cfg.saes) - set(override_saes))
            raise ValueError(f"override_saes keys must match cfg.saes; extra: {extra}; missing: {missing}")
        self.cfg = cfg
        if override_saes is not None:
            cfg = cfg.model_copy(update={"saes": {name: sae.cfg for name, sae in override_saes.items()}})
        self.sweep_cfg = cfg.to_sweep_config(model=override_model, dataset=override_dataset)
        self.runner = SAESweepRunner(self.sweep_cfg, start_from=override_saes)

    def run(self) -> dict[str, TrainingSAE[Any]]:
        """Train, write each SAE to ``{output_path}/{name}``, and return the trained SAEs by name."""
        return self.runner.run()
