"""SAELens's ``PretokenizeRunner``: a text dataset tokenized and packed into prompts, saved as a dataset.

The output is the dataset SAELens's runner produces: one ``input_ids`` row of
``context_size`` token ids per prompt, documents packed end to end by the llm source's
packing rules (``begin_batch_token`` opens each prompt, ``sequence_separator_token`` sits
between documents, ``begin_sequence_token`` opens each document), each
``pretokenize_batch_size`` documents packed on their own (a partial last prompt is
dropped), then optionally shuffled. ``save_path`` also receives ``sae_lens.json``, the
metadata SAELens writes beside it. The llm source trains on the result as a tokenized dataset.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from saecore.errors import ConfigError
from saecore.version import __version__
from saecore_source_llm.config import reject_unknown_fields
from saecore_source_llm.token_stream import one_document_per_prompt, pack_documents

SpecialToken = int | Literal["bos", "eos", "sep"] | None
METADATA_FILE = "sae_lens.json"

# Fields SAELens acts on that this runner does not, with what happens instead.
_NO_EFFECT: dict[str, tuple[Any, str]] = {
    "dataset_trust_remote_code": (None, "datasets are opened without remote code"),
    "hf_repo_id": (None, "the dataset is saved to save_path only; upload it with "
                         "datasets.load_from_disk(save_path).push_to_hub(repo_id)"),
}


class PretokenizeRunnerConfig(BaseModel):
    """SAELens's ``PretokenizeRunnerConfig``: every field it has, with its defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    tokenizer_name: str = Field(default="gpt2", description="Tokenizer name on the Hub, or a local folder.")
    dataset_path: str = Field(default="", description="Dataset name on the Hub, or local files or folder.")
    dataset_name: str | None = Field(default=None, description="The dataset's configuration name.")
    dataset_trust_remote_code: bool | None = None
    split: str | None = Field(default="train", description="Split to tokenize.")
    data_files: list[str] | None = Field(default=None, description="Files of the dataset to read.")
    data_dir: str | None = Field(default=None, description="Folder of the dataset to read.")
    num_proc: int = Field(default=4, gt=0, description="Tokenizing processes (1 when streaming).")
    context_size: int = Field(default=128, gt=0, description="Tokens per prompt.")
    column_name: str = Field(default="text", description="Column holding the documents.")
    use_chat_formatting: bool = Field(default=False, description="Tokenize conversations with the chat template.")
    shuffle: bool = Field(default=True, description="Shuffle the prompts.")
    seed: int | None = Field(default=None, description="Seed of the shuffle.")
    streaming: bool = Field(default=False, description="Stream the dataset.")
    pretokenize_batch_size: int | None = Field(default=1000, description="Documents packed together.")
    begin_batch_token: SpecialToken = Field(default="bos", description="Token opening every prompt.")
    begin_sequence_token: SpecialToken = Field(default=None, description="Token opening every document.")
    sequence_separator_token: SpecialToken = Field(default="bos", description="Token between documents.")
    disable_concat_sequences: bool = Field(default=False, description="One prompt per long-enough document.")
    save_path: str | None = Field(default=None, description="Folder the dataset is saved to.")
    hf_repo_id: str | None = None
    hf_num_shards: int = 64
    hf_revision: str = "main"
    hf_is_private_repo: bool = False

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, values: Any) -> Any:
        return reject_unknown_fields(values, cls.model_fields)

    def warn_fields_without_effect(self) -> None:
        """One line per SAELens field set to something this runner does not act on."""
        for name, (default, what_happens) in _NO_EFFECT.items():
            if getattr(self, name) != default:
                warnings.warn(f"PretokenizeRunnerConfig.{name}={getattr(self, name)!r} has no effect in "
                              f"saecore: {what_happens}", UserWarning, stacklevel=3)

    def metadata(self) -> dict[str, Any]:
        """What ``sae_lens.json`` records: the tokenizer, the source dataset and the packing settings."""
        return {
            "sae_lens_version": __version__,
            "tokenizer_name": self.tokenizer_name,
            "original_dataset": self.dataset_path,
            "original_dataset_name": self.dataset_name,
            "original_split": self.split,
            "original_data_files": self.data_files,
            "original_column_name": self.column_name,
            "context_size": self.context_size,
            "shuffled": self.shuffle,
            "seed": self.seed,
            "begin_batch_token": self.begin_batch_token,
            "begin_sequence_token": self.begin_sequence_token,
            "sequence_separator_token": self.sequence_separator_token,
            "disable_concat_sequences": self.disable_concat_sequences,
            "use_chat_formatting": self.use_chat_formatting,
        }


def special_token_id(token: SpecialToken, tokenizer: Any, field: str) -> int | None:
    """The id a ``bos``/``eos``/``sep`` setting names in ``tokenizer`` (an int is used as it is)."""
    if token is None or isinstance(token, int):
        return token
    token_id = getattr(tokenizer, f"{token}_token_id")
    if token_id is None:
        raise ConfigError(f"{field}={token!r}: the tokenizer has no {token} token; use another token or None")
    return int(token_id)


class PretokenizeRunner:
    """Tokenizes ``cfg.dataset_path`` and saves it to ``cfg.save_path`` (SAELens's ``PretokenizeRunner``)."""

    def __init__(self, cfg: PretokenizeRunnerConfig) -> None:
        self.cfg = cfg

    def run(self) -> Any:
        """Tokenize, pack, shuffle and save; return the dataset (torch format, ``input_ids`` column)."""
        import datasets
        from transformers import AutoTokenizer

        cfg = self.cfg
        cfg.warn_fields_without_effect()
        dataset = datasets.load_dataset(cfg.dataset_path, name=cfg.dataset_name, data_dir=cfg.data_dir,
                                        data_files=cfg.data_files, split=cfg.split, streaming=cfg.streaming)
        if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            raise ConfigError(f"dataset_path={cfg.dataset_path!r} has the splits {list(dataset)}; set split to one")
        if cfg.streaming and cfg.num_proc > 1:
            raise ConfigError(f"num_proc={cfg.num_proc}: must be 1 when streaming is True")
        if cfg.streaming and cfg.save_path is not None:
            raise ConfigError(f"save_path={cfg.save_path!r}: a streamed dataset cannot be saved; set streaming=False")
        tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name)
        tokenizer.model_max_length = sys.maxsize
        packer = _Packer(cfg, tokenizer)
        options = {} if cfg.streaming else {"num_proc": cfg.num_proc if cfg.num_proc > 1 else None}
        tokenized = dataset.map(packer, batched=True, batch_size=cfg.pretokenize_batch_size,
                                remove_columns=dataset.column_names, **options)
        if cfg.shuffle:
            tokenized = tokenized.shuffle(seed=cfg.seed)
        tokenized = tokenized.with_format("torch") if cfg.streaming else tokenized.with_format("torch", ["input_ids"])
        if cfg.save_path is not None:
            tokenized.save_to_disk(cfg.save_path)
            (Path(cfg.save_path) / METADATA_FILE).write_text(json.dumps(cfg.metadata(), indent=2, ensure_ascii=False))
        return tokenized


class _Packer:
    """The ``datasets.map`` function: a batch of documents in, their packed prompts out."""

    def __init__(self, cfg: PretokenizeRunnerConfig, tokenizer: Any) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.begin_batch = special_token_id(cfg.begin_batch_token, tokenizer, "begin_batch_token")
        self.begin_sequence = special_token_id(cfg.begin_sequence_token, tokenizer, "begin_sequence_token")
        self.separator = special_token_id(cfg.sequence_separator_token, tokenizer, "sequence_separator_token")

    def __call__(self, examples: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        documents = enumerate(self._tokenized(examples[self.cfg.column_name]))
        if self.cfg.disable_concat_sequences:
            first = self.begin_sequence if self.begin_sequence is not None else self.begin_batch
            prompts = one_document_per_prompt(documents, context_size=self.cfg.context_size, bos=first)
        else:
            prompts = pack_documents(documents, context_size=self.cfg.context_size, bos=self.begin_batch,
                                     separator=self.separator)
        return {"input_ids": [prompt for prompt, _, _ in prompts]}

    def _tokenized(self, column: list[Any]) -> Iterator[list[int]]:
        for example in column:
            tokens = self._tokenize(example)
            if not tokens:
                continue
            if not self.cfg.disable_concat_sequences and self.begin_sequence is not None \
                    and tokens[0] != self.begin_sequence:
                tokens = [self.begin_sequence, *tokens]
            yield tokens

    def _tokenize(self, example: Any) -> list[int]:
        if not self.cfg.use_chat_formatting:
            return list(self.tokenizer.encode(example))
        if isinstance(example, str):
            warnings.warn("use_chat_formatting is True but the column holds strings; each is tokenized as one "
                          "user message", UserWarning, stacklevel=2)
            example = [{"role": "user", "content": example}]
        return list(self.tokenizer.apply_chat_template(example, tokenize=True, return_dict=False))


def pretokenize_runner(cfg: PretokenizeRunnerConfig) -> Any:
    """SAELens's deprecated function form of ``PretokenizeRunner(cfg).run()``."""
    warnings.warn("pretokenize_runner is deprecated; use PretokenizeRunner(cfg).run()", DeprecationWarning,
                  stacklevel=2)
    return PretokenizeRunner(cfg).run()
