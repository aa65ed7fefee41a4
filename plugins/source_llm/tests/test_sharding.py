"""``shard_for_rank``: in data-parallel training each rank runs the model on its own documents.

Rank ``r`` of ``W`` must serve exactly what a single source serves on the documents
``r, r + W, …`` (with nothing shuffled, so the comparison is row by row): the ranks'
shares are then disjoint and together cover the dataset.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig

from saecore.errors import ConfigError, SAEFileError

WORLD_SIZE = 2


def make_source(hf_model: Any, seed: int = 0, **settings: Any) -> LLMSource:
    values: dict[str, Any] = {"model": hf_model, "hook_name": "transformer.h.0", "context_size": 16,
                              "store_batch_size_prompts": 4, "n_batches_in_buffer": 3, "n_eval_batches": 1,
                              "eval_batch_size_prompts": 2, "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values), seed=seed)


def sharded(hf_model: Any, rank: int, **settings: Any) -> LLMSource:
    source = make_source(hf_model, **settings)
    assert source.shard_for_rank(rank, WORLD_SIZE)
    return source


@pytest.mark.parametrize("data", ["streamed files", "pretokenized rows"])
def test_each_rank_serves_exactly_its_own_documents(hf_model: Any, text_dir: Path, corpus: list[str],
                                                    data: str) -> None:
    from datasets import Dataset

    if data == "streamed files":
        whole: dict[str, Any] = {"dataset_path": str(text_dir)}
        documents = [{"text": text} for text in corpus]
    else:
        rows = torch.randint(1, 300, (40, 16), generator=torch.Generator().manual_seed(5)).tolist()
        whole = {"dataset": Dataset.from_dict({"tokens": rows})}
        documents = [{"tokens": row} for row in rows]
    for rank in range(WORLD_SIZE):
        share = sharded(hf_model, rank, activations_mixing_fraction=0.0, **whole)
        alone = make_source(hf_model, activations_mixing_fraction=0.0,
                            dataset=Dataset.from_list(documents[rank::WORLD_SIZE]))
        for _ in range(6):
            assert torch.equal(share.next_batch(32), alone.next_batch(32))


def test_ranks_shuffle_differently_and_evaluate_the_same_prompts(hf_model: Any, text_dir: Path) -> None:
    ranks = [sharded(hf_model, rank, dataset_path=str(text_dir)) for rank in range(WORLD_SIZE)]
    single = make_source(hf_model, dataset_path=str(text_dir))
    assert not torch.equal(ranks[0].next_batch(32), ranks[1].next_batch(32))
    assert all(torch.equal(rank.eval_tokens(), single.eval_tokens()) for rank in ranks)


def test_a_sharded_source_resumes_exactly_and_only_as_the_same_rank(hf_model: Any, text_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # half the small corpus is soon read again
        original = sharded(hf_model, 1, dataset_path=str(text_dir))
        for _ in range(7):
            original.next_batch(24)
        state = original.state_dict()
        expected = [original.next_batch(24) for _ in range(8)]
        resumed = sharded(hf_model, 1, dataset_path=str(text_dir))
        resumed.load_state_dict(state)
        assert all(torch.equal(resumed.next_batch(24), batch) for batch in expected)
    for other in (sharded(hf_model, 0, dataset_path=str(text_dir)), make_source(hf_model, dataset_path=str(text_dir))):
        with pytest.raises(SAEFileError, match=r"rank 1's of 2 data-parallel ranks.*same number of ranks"):
            other.load_state_dict(state)


def test_sharding_after_the_first_batch_is_refused(hf_model: Any, text_dir: Path) -> None:
    source = make_source(hf_model, dataset_path=str(text_dir))
    source.next_batch(32)
    with pytest.raises(ConfigError, match="before the llm source serves its first batch"):
        source.shard_for_rank(0, WORLD_SIZE)
    with pytest.raises(ConfigError, match=r"rank=2 must be between 0 and world_size - 1 = 1"):
        make_source(hf_model, dataset_path=str(text_dir)).shard_for_rank(2, WORLD_SIZE)
