"""The ``llm`` source's settings, with SAELens's names and defaults where SAELens has them.

Deliberate differences from SAELens 6.54, each for a reason:

* ``n_batches_in_buffer`` counts *store batches* (``store_batch_size_prompts`` prompts of
  ``context_size`` tokens each), as its name says and as SAELens ≤ 5 did. SAELens 6.54
  sizes the buffer as ``n_batches_in_buffer × context_size`` tokens, which makes its own
  defaults (20 × 128 = 2,560 tokens against a 4,096-token batch) unusable. Here the
  defaults give a 20 × 32 × 128 = 81,920-token buffer: 20 default training batches.
* ``is_dataset_tokenized`` may be left ``None`` to detect the column; SAELens accepts the
  field and then ignores it.
* ``model`` and ``dataset`` take Python objects (a loaded model, a ``datasets`` dataset),
  or a string, which then means the same as ``model_name`` / ``dataset_path`` (so the
  command line's ``--model DIR`` works).
* A ``model_name`` or ``dataset_path`` that names a local folder or files is kept as an
  absolute path, so what a run records (runner_cfg.json, the SAE's metadata) finds them
  from any working directory; a Hub name stays a name.
"""

from __future__ import annotations

import difflib
import glob
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from saecore.errors import ConfigError
from saecore.sources.base import SourceConfig

FIELDS_NEVER_FROM_FILES = ("dataset_trust_remote_code",)

ModelClassName = Literal["auto", "HookedTransformer", "TransformerBridge", "AutoModelForCausalLM"]
SpecialTokenName = Literal["bos", "eos", "sep"]


class LanguageModelFields(BaseModel):
    """Which model, which hook, which data, and how activations are batched and shuffled.

    Shared by the source's config and the flat, SAELens-shaped runner config.
    """

    # -- model ---------------------------------------------------------------------------
    model_name: str = Field(
        default="gelu-2l",
        description="An official TransformerLens/Hugging Face model name, or a local Hugging Face model folder.",
    )
    model_class_name: ModelClassName = Field(
        default="auto",
        description=(
            "How to run the model: HookedTransformer (transformer-lens 3.x), TransformerBridge "
            "(transformer-lens ≥ 3, the only choice in 4.x), AutoModelForCausalLM (plain transformers, "
            "hook names are module paths), or auto (HookedTransformer where installed, else TransformerBridge)."
        ),
    )
    model: Any = Field(
        default=None,
        description="A loaded model object from Python (HookedTransformer, TransformerBridge or a transformers model).",
    )
    model_from_pretrained_kwargs: dict[str, Any] | None = Field(
        default=None,
        description="Extra from_pretrained arguments (None: HookedTransformer gets center_writing_weights=False).",
    )
    tokenizer: Any = Field(
        default=None,
        description="A tokenizer object or a name/folder for AutoTokenizer (None: the model's own).",
    )
    hook_name: str = Field(
        default="blocks.0.hook_mlp_out",
        description="TransformerLens hook name, or for AutoModelForCausalLM a module path whose output is taken.",
    )
    hook_head_index: int | None = Field(
        default=None, ge=0, description="Take one attention head of a per-head hook (hook_z ...); None flattens heads."
    )
    additional_hook_names: list[str] = Field(
        default_factory=list,
        description=(
            "More hooks read in the same forward pass; each batch is the hooks' activations side by side "
            "(hook_name's columns first), one stream per hook."
        ),
    )
    hook_name_out: str | None = Field(
        default=None,
        description=(
            "For transcoders: the hook whose activation is the target, read in the same forward pass; "
            "hook_name's stream is then its activation followed by this hook's."
        ),
    )
    additional_hook_names_out: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "For transcoders on additional hooks: {additional hook: the hook whose activation is its target}. "
            "That hook's stream is then its activation followed by the target's, so SAEs and transcoders on "
            "several layers train from one forward pass."
        ),
    )
    model_dtype: Literal["float32", "float16", "bfloat16"] = Field(
        default="float32", description="dtype the language model's weights are loaded in."
    )
    autocast_lm: bool = Field(default=False, description="Run the language model under bfloat16 autocast.")
    llm_device: str | None = Field(default=None, description="Device of the language model (None: the source's).")
    act_store_device: str | None = Field(
        default=None,
        description="Device of the activation buffer (None: the source's; 'with_model': llm_device). Batches are "
        "moved to the SAE's device as they are served.",
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments of every forward pass (run_with_cache, logits)."
    )
    compile_llm: bool = Field(
        default=False, description="Run the forward passes that produce training activations under torch.compile."
    )
    llm_compilation_mode: str | None = Field(default=None, description="torch.compile's mode with compile_llm.")
    llm_compilation_backend: str = Field(
        default="inductor", description="torch.compile's backend with compile_llm ('eager' only traces)."
    )

    # -- data ----------------------------------------------------------------------------
    dataset_path: str = Field(
        default="", description="A Hugging Face dataset name, or local data files / a folder of them."
    )
    dataset: Any = Field(default=None, description="A datasets Dataset/IterableDataset object from Python.")
    dataset_split: str = Field(default="train", description="Split of the dataset to read.")
    streaming: bool = Field(default=True, description="Stream the dataset instead of downloading/preparing it.")
    dataset_trust_remote_code: bool = Field(
        default=True,
        description="Let a Hub dataset run its loading script (datasets < 4 only: datasets 4 and later run no "
        "scripts, so there it has no effect).",
    )
    use_chat_formatting: bool = Field(
        default=False,
        description="Tokenize each row with the tokenizer's chat template: a 'conversation', 'conversations' or "
        "'messages' column of role/content messages, or a 'text' column taken as one user message.",
    )
    is_dataset_tokenized: bool | None = Field(
        default=None,
        description="True: read a tokens/input_ids column; False: tokenize a text column; None: detect.",
    )
    dataset_column: str | None = Field(
        default=None, description="Column to read (None: tokens, input_ids or text, whichever exists)."
    )

    # -- tokens --------------------------------------------------------------------------
    context_size: int = Field(default=128, gt=0, description="Tokens per prompt fed to the model.")
    prepend_bos: bool = Field(default=True, description="Start every prompt with the BOS token.")
    sequence_separator_token: int | SpecialTokenName | None = Field(
        default="bos", description="Token placed between documents packed into one prompt (bos, eos, sep, an id, None)."
    )
    disable_concat_sequences: bool = Field(
        default=False, description="One document per prompt; documents shorter than context_size are skipped."
    )
    exclude_special_tokens: bool | list[int] = Field(
        default=False, description="Drop activations at special tokens (True: BOS/EOS/PAD/SEP; or a list of ids)."
    )
    seqpos_slice: tuple[int | None, ...] = Field(
        default=(None,), description="slice(*seqpos_slice) of positions kept from each prompt, e.g. [1, null]."
    )

    # -- batching ------------------------------------------------------------------------
    store_batch_size_prompts: int = Field(default=32, gt=0, description="Prompts per language-model forward pass.")
    n_batches_in_buffer: int = Field(
        default=20, gt=0, description="Size of the shuffling buffer, in forward passes (store batches)."
    )
    activations_mixing_fraction: float = Field(
        default=0.5, ge=0, lt=1,
        description="Fraction of the buffer kept back and mixed with fresh activations at each refill (0: no shuffle).",
    )
    prefetch_llm_batches: int | bool = Field(
        default=False,
        description=(
            "Run the language model in a background thread, this many forward passes ahead, so it overlaps "
            "the SAE step (True: as many as one buffer refill takes; False or 0: off)."
        ),
    )
    verbose: bool = Field(default=True, description="Print the buffer's size and dataset epochs.")

    # -- evaluations (the SAE spliced into the model) ----------------------------------
    n_eval_batches: int = Field(
        default=10, gt=0, description="Batches of eval prompts the SAE is spliced into for the CE-loss and KL scores."
    )
    eval_batch_size_prompts: int | None = Field(
        default=None, gt=0, description="Prompts per eval batch (None: store_batch_size_prompts)."
    )
    hold_out_eval_prompts: bool = Field(
        default=False,
        description=(
            "Never train on the documents the eval prompts come from (the dataset's first documents); "
            "False: they are also trained on."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _strings_for_objects(cls, values: Any) -> Any:
        """``model="gpt2"`` / ``dataset="path"`` mean ``model_name`` / ``dataset_path``.

        ``"<ClassName>"`` is how a saved config (runner_cfg.json) records an object it could
        not hold; read back, it means no object.
        """
        if not isinstance(values, dict):
            return values
        values = dict(values)
        for object_field in ("model", "dataset", "tokenizer"):
            value = values.get(object_field)
            if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
                values[object_field] = None
        for object_field, name_field in (("model", "model_name"), ("dataset", "dataset_path")):
            value = values.get(object_field)
            if isinstance(value, str):
                other = values.get(name_field)
                if other not in (None, "", value) and name_field in values:
                    raise ValueError(
                        f"{object_field}={value!r} and {name_field}={other!r} disagree; give one of them"
                    )
                values[name_field] = value
                values[object_field] = None
        return values

    @field_validator("model_name")
    @classmethod
    def _local_model_is_absolute(cls, value: str) -> str:
        return os.path.abspath(Path(value).expanduser()) if value and Path(value).expanduser().is_dir() else value

    @field_validator("dataset_path")
    @classmethod
    def _local_data_is_absolute(cls, value: str) -> str:
        local = Path(value).expanduser()
        exists = local.exists() or (any(char in value for char in "*?[") and bool(glob.glob(str(local))))
        return os.path.abspath(local) if value and exists else value

    @field_validator("prefetch_llm_batches")
    @classmethod
    def _prefetch_not_negative(cls, value: int | bool) -> int | bool:
        if value < 0:
            raise ValueError(f"must be True, False or a number of forward passes ≥ 0, got {value}")
        return value

    @field_validator("seqpos_slice")
    @classmethod
    def _seqpos_shape(cls, value: tuple[int | None, ...]) -> tuple[int | None, ...]:
        if not 1 <= len(value) <= 3:
            raise ValueError(f"must hold 1 to 3 entries (start, stop, step) for slice(*seqpos_slice), got {value}")
        if len(value) == 3 and value[2] is not None and value[2] < 1:
            raise ValueError(f"the step {value[2]} must be at least 1")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LanguageModelFields:
        if self.use_chat_formatting and self.is_dataset_tokenized:
            raise ValueError("use_chat_formatting=True tokenizes conversations, so is_dataset_tokenized cannot be "
                             "True; leave it None or set it to False")
        if self.training_context_size == 0:
            raise ValueError(
                f"seqpos_slice={self.seqpos_slice} keeps no position of a context_size={self.context_size} prompt"
            )
        if self.prepend_bos and self.context_size < 2:
            raise ValueError("context_size must be at least 2 with prepend_bos=True (one position is the BOS)")
        self._check_hooks()
        return self

    def _check_hooks(self) -> None:
        seen = {self.hook_name: "hook_name"}
        for index, name in enumerate(self.additional_hook_names):
            if name in seen:
                which = "hook_name" if name == self.hook_name else "an earlier entry"
                raise ValueError(f"additional_hook_names[{index}]={name!r} repeats {which}; each hook is read once, "
                                 "so list every hook only once")
            seen[name] = f"additional_hook_names[{index}]"
        unknown = sorted(set(self.additional_hook_names_out) - set(self.additional_hook_names))
        if unknown:
            raise ValueError(f"additional_hook_names_out has keys {unknown} that are not in additional_hook_names="
                             f"{self.additional_hook_names}; each key is an additional hook, its value that hook's "
                             "target hook")
        for where, name in self.output_hooks.items():
            if name in seen:
                raise ValueError(f"{where}={name!r} is {seen[name]}; a transcoder's target is read at a hook no "
                                 "other field names (an MLP's output for its input, say)")
            seen[name] = where
            if self.hook_head_index is not None:
                raise ValueError(f"{where}={name!r} cannot be combined with hook_head_index={self.hook_head_index}: "
                                 "it would be unclear which hook it narrows to one head")
        if self.hook_head_index is not None and self.additional_hook_names:
            raise ValueError(
                f"hook_head_index={self.hook_head_index} cannot be combined with additional_hook_names="
                f"{self.additional_hook_names}: it would be unclear which hooks it narrows to one head. Read the "
                "heads flattened (hook_head_index=None), or use one source per head"
            )

    @property
    def output_hooks(self) -> dict[str, str]:
        """Every target hook read, by the field that names it: ``hook_name_out``, then ``additional_hook_names_out``."""
        named = {"hook_name_out": self.hook_name_out} if self.hook_name_out is not None else {}
        for name in self.additional_hook_names:
            if name in self.additional_hook_names_out:
                named[f"additional_hook_names_out[{name!r}]"] = self.additional_hook_names_out[name]
        return named

    @property
    def hook_pairs(self) -> dict[str, str | None]:
        """Each stream's input hook (``hook_name``, then ``additional_hook_names``) → its target hook, or None."""
        pairs: dict[str, str | None] = {self.hook_name: self.hook_name_out}
        for name in self.additional_hook_names:
            pairs[name] = self.additional_hook_names_out.get(name)
        return pairs

    @property
    def buffer_device(self) -> str | None:
        """``act_store_device`` resolved: None (the source's device), a device, or llm_device for 'with_model'."""
        if self.act_store_device == "with_model":
            return self.llm_device
        return self.act_store_device

    @property
    def hook_names(self) -> list[str]:
        """Every hook read, in column order: each stream's input hook followed by its target hook, if any."""
        return [hook for pair in self.hook_pairs.items() for hook in pair if hook is not None]

    @property
    def training_context_size(self) -> int:
        """Positions of each prompt that become activations (after seqpos_slice)."""
        return len(range(self.context_size)[slice(*self.seqpos_slice)])

    @property
    def prefetch_chunks(self) -> int:
        """Forward passes the prefetch thread keeps ready (0: no thread)."""
        if self.prefetch_llm_batches is True:
            per_pass = self.store_batch_size_prompts * self.training_context_size
            servable = self.buffer_activations - int(self.buffer_activations * self.activations_mixing_fraction)
            return max(1, -(-servable // per_pass))
        return int(self.prefetch_llm_batches)

    @property
    def eval_prompts(self) -> int:
        """How many prompts the CE-loss/KL evaluations run on."""
        return self.n_eval_batches * (self.eval_batch_size_prompts or self.store_batch_size_prompts)

    @property
    def buffer_prompts(self) -> int:
        return self.n_batches_in_buffer * self.store_batch_size_prompts

    @property
    def buffer_activations(self) -> int:
        """Activation slots in the mixing buffer (before any special tokens are dropped)."""
        return self.buffer_prompts * self.training_context_size

    def check_train_batch_size(self, batch_size: int, field: str = "train_batch_size_tokens") -> None:
        """Raise ConfigError unless the buffer can serve ``batch_size`` activations per step."""
        check_buffer_serves(
            capacity=self.buffer_activations,
            mixing_fraction=self.activations_mixing_fraction,
            batch_size=batch_size,
            sizes=(
                f"n_batches_in_buffer={self.n_batches_in_buffer} × store_batch_size_prompts="
                f"{self.store_batch_size_prompts} × {self.training_context_size} positions per prompt "
                f"(context_size={self.context_size}, seqpos_slice={self.seqpos_slice})"
            ),
            field=field,
        )


class LLMSourceConfig(SourceConfig, LanguageModelFields):
    """The ``llm`` source's config (see :class:`LanguageModelFields` for the fields)."""

    @classmethod
    def defaults_from_sae_metadata(cls, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """Settings that rebuild an SAE's training activations from its cfg.json metadata (``saecore eval``).

        Hook names of TransformerLens models work with whichever TransformerLens class is
        installed, so a recorded ``HookedTransformer``/``TransformerBridge`` becomes
        ``auto`` (SAELens files say ``HookedTransformer``, which transformer-lens 4 lacks);
        ``AutoModelForCausalLM`` is kept, its hook names being module paths. Recorded
        ``model_from_pretrained_kwargs`` are HookedTransformer processing options and are
        kept only when a HookedTransformer will load the model. ``dataset_trust_remote_code``
        is never taken from a file: running a dataset's loading script is the user's choice.
        """
        from saecore_source_llm.model_loading import HOOKED_TRANSFORMER, TRANSFORMERS, resolve_model_class

        values = {name: metadata[name] for name in cls.model_fields
                  if metadata.get(name) is not None and name not in FIELDS_NEVER_FROM_FILES}
        if values.get("model_class_name") != TRANSFORMERS:
            values.pop("model_class_name", None)
        if resolve_model_class(values.get("model_class_name", "auto")) != HOOKED_TRANSFORMER:
            values.pop("model_from_pretrained_kwargs", None)
        return values


def check_buffer_serves(*, capacity: int, mixing_fraction: float, batch_size: int, sizes: str, field: str) -> None:
    """The buffer must hold two batches and serve at least one between refills."""
    servable = capacity - int(capacity * mixing_fraction)
    if capacity < 2 * batch_size or servable < batch_size:
        need = max(2 * batch_size, -(-batch_size // max(1e-12, 1 - mixing_fraction)))
        raise ConfigError(
            f"the activation buffer holds {capacity} activations ({sizes}) and keeps "
            f"activations_mixing_fraction={mixing_fraction} of them back at each refill, so it cannot serve "
            f"{field}={batch_size}: it must hold at least {int(need)} activations (2 batches, and one batch "
            f"outside the kept fraction). Raise n_batches_in_buffer or store_batch_size_prompts, or lower {field}"
        )


def reject_unknown_fields(values: Any, fields: Mapping[str, Any]) -> Any:
    """A misspelled field is an error that names it and the fields it is close to."""
    if not isinstance(values, Mapping):
        return values
    problems = []
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=3, cutoff=0.7)
            hint = f" (did you mean {', '.join(repr(name) for name in close)}?)" if close else ""
            problems.append(f"unknown field {key!r}{hint}")
    if problems:
        raise ValueError("; ".join(problems))
    return values
