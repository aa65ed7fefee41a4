"""Packing documents into prompts: BOS and separators, one document per prompt, pretokenized rows, resume."""

from __future__ import annotations

import random
from typing import Any

import pytest
from saecore_source_llm.dataset_reader import DatasetColumn
from saecore_source_llm.token_stream import (
    StreamPosition,
    TokenStream,
    one_document_per_prompt,
    pack_documents,
    pretokenized_prompts,
)

from saecore.errors import ConfigError

BOS, SEP = 0, 99


def numbered(documents: list[list[int]], start: int = 0) -> list[tuple[int, list[int]]]:
    return list(enumerate(documents[start:], start=start))


def test_bos_starts_every_prompt_and_separators_join_documents() -> None:
    documents = [[1, 2, 3], [4, 5, 6, 7, 8], [9]]
    packed = list(pack_documents(numbered(documents), context_size=4, bos=BOS, separator=SEP))
    assert packed == [
        ([BOS, 1, 2, 3], 1, 0),  # the first document fills the prompt exactly
        ([BOS, 4, 5, 6], 1, 3),  # the second continues in the next prompt, after a fresh BOS
        ([BOS, 7, 8, SEP], 2, 0),  # the separator fills the last place; document 2 starts the next prompt
    ]  # [BOS, 9] is left over when the documents run out and is dropped


def test_tokens_already_present_are_not_doubled() -> None:
    documents = [[BOS, 1, 2], [SEP, 3, 4, 5, 6]]
    packed = [prompt for prompt, _, _ in pack_documents(numbered(documents), context_size=6, bos=BOS, separator=SEP)]
    assert packed == [[BOS, 1, 2, SEP, 3, 4]]


def test_without_bos_or_separator_documents_are_plainly_concatenated() -> None:
    documents = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    packed = [prompt for prompt, _, _ in pack_documents(numbered(documents), context_size=3, bos=None, separator=None)]
    assert packed == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_packing_keeps_every_token_in_order_and_resumes_from_any_position() -> None:
    rng = random.Random(3)
    documents = [[rng.randint(1, 50) for _ in range(rng.randint(0, 23))] for _ in range(40)]
    packed = list(pack_documents(numbered(documents), context_size=8, bos=BOS, separator=SEP))
    assert all(len(prompt) == 8 and prompt[0] == BOS for prompt, _, _ in packed)
    content = [token for prompt, _, _ in packed for token in prompt if token not in (BOS, SEP)]
    every_token = [token for document in documents for token in document]
    assert content == every_token[:len(content)]
    assert len(every_token) - len(content) < 8  # only the last partial prompt is dropped
    for k, (_, document, offset) in enumerate(packed):
        resumed = pack_documents(numbered(documents, document), context_size=8, bos=BOS, separator=SEP,
                                 start_offset=offset)
        assert [prompt for prompt, _, _ in resumed] == [prompt for prompt, _, _ in packed[k + 1:]]


def test_one_document_per_prompt_skips_short_documents() -> None:
    documents = [[1, 2], [3, 4, 5], [BOS, 6, 7, 8, 9], [10, 11, 12, 13, 14]]
    packed = list(one_document_per_prompt(numbered(documents), context_size=4, bos=BOS))
    assert packed == [([BOS, 3, 4, 5], 2, 0), ([BOS, 6, 7, 8], 3, 0), ([BOS, 10, 11, 12], 4, 0)]


def test_pretokenized_rows_are_cut_to_context_size_and_short_rows_are_an_error() -> None:
    rows = [[5, 6, 7, 8, 9], [1, 2, 3, 4]]
    assert [p for p, _, _ in pretokenized_prompts(numbered(rows), context_size=4)] == [[5, 6, 7, 8], [1, 2, 3, 4]]
    with pytest.raises(ConfigError, match=r"row 1 .* 2 tokens, fewer than context_size=3"):
        list(pretokenized_prompts(numbered([[1, 2, 3], [4, 5]]), context_size=3))


def stream(dataset: Any, tokenizer: Any, **overrides: Any) -> TokenStream:
    settings: dict[str, Any] = {"context_size": 8, "bos": tokenizer.bos_token_id,
                                "separator": tokenizer.bos_token_id, "disable_concat_sequences": False}
    settings.update(overrides)
    return TokenStream(dataset, DatasetColumn("text", False), tokenizer, **settings)


def test_text_is_tokenized_without_special_tokens_then_packed(tokenizer: Any) -> None:
    from datasets import Dataset

    texts = ["the cat sat on the mat", "a big dog ran away"]
    dataset = Dataset.from_list([{"text": text} for text in texts])
    first, second = (tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts)
    bos = tokenizer.bos_token_id
    assert bos not in first + second
    tokens = stream(dataset, tokenizer, context_size=2 + len(first) + len(second)).next_prompts(1)
    assert tokens.tolist() == [[bos, *first, bos, *second]]


def test_stream_starts_a_new_pass_when_the_dataset_runs_out(tokenizer: Any) -> None:
    from datasets import Dataset

    text = "the cat sat on the mat and the dog ran away"
    dataset = Dataset.from_list([{"text": text}])
    length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    passes: list[int] = []
    tokens_stream = stream(dataset, tokenizer, context_size=length + 1, on_new_epoch=passes.append)
    first = tokens_stream.next_prompts(1)
    again = tokens_stream.next_prompts(1)
    assert passes == [1] and tokens_stream.position.epoch == 1
    assert again.tolist() == first.tolist()


def test_stream_resumes_at_its_position(tokenizer: Any, corpus: list[str]) -> None:
    from datasets import Dataset

    dataset = Dataset.from_list([{"text": text} for text in corpus[:20]])
    original = stream(dataset, tokenizer)
    original.next_prompts(7)
    position = original.position
    assert position != StreamPosition()
    resumed = stream(dataset, tokenizer, position=position)
    assert resumed.next_prompts(5).tolist() == original.next_prompts(5).tolist()


def test_an_empty_dataset_is_an_error(tokenizer: Any) -> None:
    from datasets import Dataset

    dataset = Dataset.from_list([{"text": ""}, {"text": "cat"}])
    with pytest.raises(ConfigError, match="gave no prompt"):
        stream(dataset, tokenizer, disable_concat_sequences=True).next_prompts(1)
