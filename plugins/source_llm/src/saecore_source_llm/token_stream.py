"""Documents in, prompts of exactly ``context_size`` tokens out, resumable at any prompt.

Text documents are tokenized without special tokens and packed end to end (SAELens's
rules): every prompt starts with BOS when ``prepend_bos`` is set (unless its first token
already is BOS), and consecutive documents inside one prompt are separated by the
separator token (unless the next document already starts with it). A document that does
not fit continues in the next prompt, which again starts with BOS.
``disable_concat_sequences`` instead makes one prompt per document and skips documents
that are too short. Pretokenized rows are used as they are, cut to ``context_size``.
With ``use_chat_formatting`` each row is a conversation, tokenized by the tokenizer's
chat template (a text row is one user message), then packed like text.

After each prompt the stream knows exactly where the next one starts (epoch, document,
token offset inside it): that is all a resumed run needs to continue the same sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from saecore.errors import ConfigError
from saecore_source_llm.dataset_reader import ALL_DOCUMENTS, DatasetColumn, DocumentSelection, iter_column

TOKENIZE_CHUNK = 64
Documents = Iterable[tuple[int, Sequence[int]]]
Packed = Iterator[tuple[list[int], int, int]]


@dataclass(frozen=True)
class StreamPosition:
    """Where the next prompt starts: ``offset`` tokens into document ``document`` of pass ``epoch``."""

    epoch: int = 0
    document: int = 0
    offset: int = 0


def pack_documents(
    documents: Documents, *, context_size: int, bos: int | None, separator: int | None, start_offset: int = 0
) -> Packed:
    """Concatenate documents into full prompts; yields ``(prompt, next_document, next_offset)``.

    ``start_offset`` tokens of the first document are skipped (a resumed position).
    A partial prompt left when the documents run out is dropped.
    """
    prompt: list[int] = []
    offset = start_offset
    for index, tokens in documents:
        while offset < len(tokens):
            if not prompt:
                if bos is not None and tokens[offset] != bos:
                    prompt.append(bos)
            elif separator is not None and tokens[offset] != separator:
                prompt.append(separator)
            take = context_size - len(prompt)
            prompt.extend(tokens[offset:offset + take])
            offset = min(offset + take, len(tokens))
            if len(prompt) == context_size:
                finished = offset >= len(tokens)
                yield prompt, index + 1 if finished else index, 0 if finished else offset
                prompt = []
        offset = 0


def one_document_per_prompt(documents: Documents, *, context_size: int, bos: int | None) -> Packed:
    """``disable_concat_sequences``: each long-enough document gives one prompt, the rest are skipped."""
    for index, tokens in documents:
        row = list(tokens)
        if bos is not None and len(row) >= context_size - 1 and row[0] != bos:
            row = [bos, *row[:context_size - 1]]
        if len(row) >= context_size:
            yield row[:context_size], index + 1, 0


def pretokenized_prompts(documents: Documents, *, context_size: int) -> Packed:
    """Rows of token ids used as they are (their BOS/separators were added when tokenizing)."""
    for index, tokens in documents:
        if len(tokens) < context_size:
            raise ConfigError(
                f"row {index} of the pretokenized dataset has {len(tokens)} tokens, fewer than "
                f"context_size={context_size}; lower context_size or re-tokenize the dataset"
            )
        yield list(tokens[:context_size]), index + 1, 0


class TokenStream:
    """Serves ``[n, context_size]`` prompt tensors from a dataset, across as many passes as needed."""

    def __init__(
        self,
        dataset: Any,
        column: DatasetColumn,
        tokenizer: Any,
        *,
        context_size: int,
        bos: int | None,
        separator: int | None,
        disable_concat_sequences: bool,
        position: StreamPosition | None = None,
        on_new_epoch: Callable[[int], None] | None = None,
        selection: DocumentSelection = ALL_DOCUMENTS,
        vocab_size: int | None = None,
        dataset_name: str = "the dataset",
    ) -> None:
        if not column.tokenized and tokenizer is None:
            raise ConfigError(f"the dataset column {column.name!r} holds text, but no tokenizer is available; "
                              "set tokenizer (an object or a name/folder for AutoTokenizer)")
        self.dataset = dataset
        self.column = column
        self.tokenizer = tokenizer
        self.context_size = context_size
        self.bos = bos
        self.separator = separator
        self.disable_concat_sequences = disable_concat_sequences
        self.on_new_epoch = on_new_epoch
        self.selection = selection
        self.vocab_size = vocab_size
        self.dataset_name = dataset_name
        self._position = position or StreamPosition()
        self._prompts = self._generate(self._position)

    @property
    def position(self) -> StreamPosition:
        """Where the next prompt starts."""
        return self._position

    def next_prompts(self, count: int) -> torch.Tensor:
        rows = []
        for _ in range(count):
            prompt, self._position = next(self._prompts)
            rows.append(prompt)
        tokens = torch.tensor(rows, dtype=torch.long)
        self._check_token_ids(tokens)
        return tokens

    def _check_token_ids(self, tokens: torch.Tensor) -> None:
        """Every id must index the model's embedding; one min/max per batch finds any that does not."""
        if self.vocab_size is None or tokens.numel() == 0:
            return
        low, high = int(tokens.min()), int(tokens.max())
        if low >= 0 and high < self.vocab_size:
            return
        bad = low if low < 0 else high
        raise ConfigError(f"token id {bad} in {self.dataset_name} is outside the model's vocabulary (vocab size "
                          f"{self.vocab_size}: ids 0 to {self.vocab_size - 1}); the dataset was tokenized for another "
                          "model or tokenizer")

    def _generate(self, start: StreamPosition) -> Iterator[tuple[list[int], StreamPosition]]:
        position = start
        while True:
            produced = False
            documents = self._documents(position.document)
            for prompt, document, offset in self._pack(documents, position.offset):
                produced = True
                yield prompt, StreamPosition(position.epoch, document, offset)
            if not produced and position.document == 0 and position.offset == 0:
                raise ConfigError(
                    f"a full pass over the dataset{self.selection.describe()} gave no prompt of context_size="
                    f"{self.context_size} tokens (no document is left, or every document is too short with "
                    "disable_concat_sequences=True)"
                )
            position = StreamPosition(position.epoch + 1, 0, 0)
            if self.on_new_epoch is not None:
                self.on_new_epoch(position.epoch)

    def _pack(self, documents: Documents, start_offset: int) -> Packed:
        if self.column.tokenized:
            return pretokenized_prompts(documents, context_size=self.context_size)
        if self.disable_concat_sequences:
            return one_document_per_prompt(documents, context_size=self.context_size, bos=self.bos)
        return pack_documents(documents, context_size=self.context_size, bos=self.bos, separator=self.separator,
                              start_offset=start_offset)

    def _documents(self, start: int) -> Iterator[tuple[int, Sequence[int]]]:
        values = iter_column(self.dataset, self.column.name, start, self.selection)
        if self.column.tokenized:
            for index, value in values:
                yield index, value.tolist() if hasattr(value, "tolist") else list(value)
            return
        batch: list[tuple[int, Any]] = []
        for index, value in values:
            batch.append((index, value or ""))
            if len(batch) == TOKENIZE_CHUNK:
                yield from self._tokenize(batch)
                batch = []
        yield from self._tokenize(batch)

    def _tokenize(self, batch: list[tuple[int, Any]]) -> Iterator[tuple[int, Sequence[int]]]:
        if not batch:
            return
        if self.column.chat:
            for index, row in batch:
                conversation = [{"role": "user", "content": row}] if isinstance(row, str) else list(row)
                yield index, self.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=False)
            return
        encoded = self.tokenizer([text for _, text in batch], add_special_tokens=False, verbose=False)["input_ids"]
        for (index, _), tokens in zip(batch, encoded):
            yield index, tokens
