"""The llm source with local data: dataset kinds, token handling, shuffling, exact resume, metadata.

A plain transformers model object is used throughout (the fastest to build); the other
model kinds are covered in test_models.py.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig

from saecore.registry import get_registry
from saecore.training.checkpoint import serialize_weights_only

HOOK = "transformer.h.0"


def make_source(hf_model: Any, seed: int = 0, **settings: Any) -> LLMSource:
    values: dict[str, Any] = {"model": hf_model, "hook_name": HOOK, "context_size": 16,
                              "store_batch_size_prompts": 4, "n_batches_in_buffer": 3, "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values), seed=seed)


def batches(source: LLMSource, count: int, size: int = 32) -> list[torch.Tensor]:
    return [source.next_batch(size) for _ in range(count)]


def hidden(hf_model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Block 0's output from the model's own forward pass: ``[batch, pos, 32]``."""
    with torch.no_grad():
        return hf_model(input_ids=tokens, output_hidden_states=True).hidden_states[1]


def test_the_source_is_registered_as_llm() -> None:
    entry = get_registry().source("llm")
    assert entry.source_class is LLMSource and entry.config_class is LLMSourceConfig


def test_local_files_folders_and_objects_give_the_same_activations(hf_model: Any, text_dir: Path,
                                                                   corpus: list[str]) -> None:
    from datasets import Dataset, DatasetDict

    streamed = batches(make_source(hf_model, dataset_path=str(text_dir)), 6)
    loaded = batches(make_source(hf_model, dataset_path=str(text_dir / "part-*.jsonl"), streaming=False), 6)
    as_object = batches(make_source(hf_model, dataset=Dataset.from_list([{"text": t} for t in corpus])), 6)
    as_split = batches(make_source(hf_model, dataset=DatasetDict(
        {"validation": Dataset.from_list([{"text": t} for t in corpus])}), dataset_split="validation"), 6)
    for other in (loaded, as_object, as_split):
        assert all(torch.equal(a, b) for a, b in zip(streamed, other))


def test_text_files_are_read_one_document_per_line(hf_model: Any, tmp_path: Path, corpus: list[str]) -> None:
    from datasets import Dataset

    (tmp_path / "corpus.txt").write_text("\n".join(corpus) + "\n")
    from_text = batches(make_source(hf_model, dataset_path=str(tmp_path / "corpus.txt")), 4)
    from_rows = batches(make_source(hf_model, dataset=Dataset.from_list([{"text": t} for t in corpus])), 4)
    assert all(torch.equal(a, b) for a, b in zip(from_text, from_rows))


def test_pretokenized_rows_are_the_prompts(hf_model: Any) -> None:
    from datasets import Dataset

    rows = torch.randint(1, 300, (12, 20), generator=torch.Generator().manual_seed(1))
    source = make_source(hf_model, dataset=Dataset.from_dict({"input_ids": rows.tolist()}),
                         activations_mixing_fraction=0.0)
    assert source.column.name == "input_ids" and source.column.tokenized
    served = source.next_batch(64)
    torch.testing.assert_close(served, hidden(hf_model, rows[:4, :16]).reshape(-1, 32))


def test_a_dataset_without_a_usable_column_names_the_columns_it_has(hf_model: Any) -> None:
    from datasets import Dataset

    from saecore.errors import ConfigError

    dataset = Dataset.from_list([{"content": "the cat", "id": 1}])
    with pytest.raises(ConfigError, match=r"found columns: 'content', 'id'.*dataset_column"):
        make_source(hf_model, dataset=dataset)
    text_only = Dataset.from_list([{"text": "the cat"}])
    with pytest.raises(ConfigError, match=r"'tokens' or 'input_ids' column \(is_dataset_tokenized=True\)"):
        make_source(hf_model, dataset=text_only, is_dataset_tokenized=True)
    source = make_source(hf_model, dataset=Dataset.from_list([{"content": "the cat sat"}]), dataset_column="content")
    assert source.column.name == "content" and not source.column.tokenized


def special_rows(bos: int) -> torch.Tensor:
    rows = torch.randint(1, 300, (16, 16), generator=torch.Generator().manual_seed(2))
    rows[(rows == bos) | (rows == 7)] = 1
    rows[:, 0] = bos
    rows[1, 5] = bos
    rows[2, 9] = 7
    return rows


@pytest.mark.parametrize("exclude", [True, "ids"])
def test_exclude_special_tokens_drops_their_positions(hf_model: Any, tokenizer: Any, exclude: Any) -> None:
    from datasets import Dataset

    bos = tokenizer.bos_token_id
    rows = special_rows(bos)
    excluded = [bos, 7] if exclude == "ids" else [bos]
    source = make_source(hf_model, dataset=Dataset.from_dict({"tokens": rows.tolist()}), tokenizer=tokenizer,
                         exclude_special_tokens=True if exclude is True else excluded, activations_mixing_fraction=0.0)
    keep = ~torch.isin(rows[:4], torch.tensor(excluded))
    expected = hidden(hf_model, rows[:4])[keep]
    assert len(expected) == 4 * 16 - 4 - 1 - int(exclude == "ids")
    torch.testing.assert_close(source.next_batch(len(expected)), expected)


@pytest.mark.parametrize("seqpos_slice", [(1, None), (2, 14, 3)])
def test_seqpos_slice_keeps_those_positions(hf_model: Any, seqpos_slice: tuple[int | None, ...]) -> None:
    from datasets import Dataset

    rows = torch.randint(1, 300, (16, 16), generator=torch.Generator().manual_seed(4))
    source = make_source(hf_model, dataset=Dataset.from_dict({"tokens": rows.tolist()}),
                         seqpos_slice=list(seqpos_slice), activations_mixing_fraction=0.0)
    expected = hidden(hf_model, rows[:4])[:, slice(*seqpos_slice)].reshape(-1, 32)
    assert source.cfg.buffer_activations == 3 * 4 * len(range(16)[slice(*seqpos_slice)])
    torch.testing.assert_close(source.next_batch(len(expected)), expected)


def test_the_seed_decides_the_shuffle(hf_model: Any, text_dir: Path) -> None:
    first = batches(make_source(hf_model, seed=3, dataset_path=str(text_dir)), 4)
    again = batches(make_source(hf_model, seed=3, dataset_path=str(text_dir)), 4)
    other = batches(make_source(hf_model, seed=4, dataset_path=str(text_dir)), 4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_a_resumed_source_serves_exactly_what_the_original_would(hf_model: Any, tokenizer: Any,
                                                                  corpus: list[str]) -> None:
    from datasets import Dataset

    dataset = Dataset.from_list([{"text": text} for text in corpus[:12]])  # small: resuming crosses passes
    settings = {"dataset": dataset, "exclude_special_tokens": True, "tokenizer": tokenizer}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        original = make_source(hf_model, **settings)
        batches(original, 11, size=24)
        saved = torch.load(io.BytesIO(serialize_weights_only(original.state_dict(), "state")), weights_only=True)
        expected = batches(original, 30, size=24)
        resumed = make_source(hf_model, seed=99, **settings)
        resumed.load_state_dict(saved)
        assert all(torch.equal(a, b) for a, b in zip(expected, batches(resumed, 30, size=24)))
    assert original.stream.position.epoch >= 1


def test_sae_metadata_records_model_hook_and_data(hf_model: Any, text_dir: Path) -> None:
    source = make_source(hf_model, model_name="tiny-gpt2", dataset_path=str(text_dir), seqpos_slice=[1, None],
                         prepend_bos=False)
    metadata = source.sae_metadata()
    assert {key: metadata[key] for key in ("model_name", "hook_name", "hook_head_index", "context_size",
                                           "prepend_bos", "dataset_path", "seqpos_slice")} == {
        "model_name": "tiny-gpt2", "hook_name": HOOK, "hook_head_index": None, "context_size": 16,
        "prepend_bos": False, "dataset_path": str(text_dir), "seqpos_slice": [1, None]}
    assert metadata["sequence_separator_token"] == "bos" and metadata["exclude_special_tokens"] is False
    json.dumps(metadata)
