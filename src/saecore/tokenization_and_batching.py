"""SAELens's ``sae_lens.tokenization_and_batching``: packing tokenized documents into fixed-length prompts.

``saecore-source-llm`` packs its own prompts; these functions are for code written
against SAELens that packs token streams itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch


def concat_and_batch_sequences(
    tokens_iterator: Iterator[torch.Tensor],
    context_size: int,
    begin_batch_token_id: int | None = None,
    begin_sequence_token_id: int | None = None,
    sequence_separator_token_id: int | None = None,
    disable_concat_sequences: bool = False,
) -> Iterator[torch.Tensor]:
    """Prompts of exactly ``context_size`` tokens from 1-D token sequences.

    Sequences are concatenated, and one longer than the room left continues in the next
    prompt. Each prompt opens with ``begin_batch_token_id``, each sequence with
    ``begin_sequence_token_id`` and each sequence after the first in a prompt with
    ``sequence_separator_token_id`` (when given, and unless the sequence already starts with
    that token). With ``disable_concat_sequences`` each sequence gives at most one prompt,
    its first tokens, and one shorter than a prompt is skipped. The last, partly filled
    prompt is dropped.
    """
    if context_size <= 0:
        raise ValueError(f"context_size must be positive, got {context_size}")
    if disable_concat_sequences:
        sequence_start = begin_sequence_token_id if begin_sequence_token_id is not None else begin_batch_token_id
        yield from _one_prompt_per_sequence(tokens_iterator, context_size, sequence_start)
        return
    pieces: list[torch.Tensor] = []
    filled = 0
    for tokens in tokens_iterator:
        if tokens.dim() != 1:
            raise ValueError(f"tokens.shape should be 1D but was {tokens.shape}")
        position = 0
        owes_sequence_start = True
        while position < tokens.shape[0]:
            first = int(tokens[position])
            markers: list[int] = []
            starts_sequence = (
                owes_sequence_start and begin_sequence_token_id is not None and first != begin_sequence_token_id
            )
            if starts_sequence:
                markers.append(begin_sequence_token_id)
                first = begin_sequence_token_id
            leading = begin_batch_token_id if filled == 0 else sequence_separator_token_id
            if leading is not None and first != leading:
                markers.insert(0, leading)
            room = context_size - filled
            taken = max(room - len(markers), 0)
            if markers[:room]:
                pieces.append(torch.tensor(markers[:room], dtype=torch.long, device=tokens.device))
            chunk = tokens[position : position + taken]
            pieces.append(chunk)
            filled += min(len(markers), room) + chunk.shape[0]
            position += taken
            # A sequence-start token that did not fit opens the next prompt instead.
            owes_sequence_start = starts_sequence and len(markers) > room
            if filled == context_size:
                yield torch.cat(pieces)
                pieces, filled = [], 0


def _one_prompt_per_sequence(
    sequences: Iterator[torch.Tensor], context_size: int, sequence_start: int | None
) -> Iterator[torch.Tensor]:
    for sequence in sequences:
        if len(sequence) == 0:
            continue
        if sequence_start is not None and len(sequence) >= context_size - 1 and sequence[0] != sequence_start:
            start = torch.tensor([sequence_start], dtype=torch.long, device=sequence.device)
            sequence = torch.cat([start, sequence[: context_size - 1]])
        if len(sequence) >= context_size:
            yield sequence[:context_size]


def tokenize_with_chat_template(conversation: list[dict[str, Any]], tokenizer: Any) -> torch.Tensor:
    """The 1-D token ids of ``conversation`` (``role``/``content`` messages) in the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(conversation, tokenize=True, return_tensors="pt", return_dict=False)
    return ids[0]
