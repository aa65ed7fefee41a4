"""``hold_out_eval_prompts``: the training stream never reads a document the eval prompts use.

Each document repeats one word, and no two documents share a token, so the tokens of a
prompt tell which documents it holds: the eval prompts' tokens (BOS aside) must never
appear in the training prompts, over more than one pass through the data.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig

from saecore.errors import ConfigError

WORDS = ("cat dog bird sat ran flew on under over mat tree river house big small red blue green quickly slowly away "
         "home because").split()


def distinct_documents(tokenizer: Any) -> list[str]:
    """Documents of one repeated word whose token sets are pairwise disjoint."""
    documents: list[str] = []
    used: set[int] = set()
    for word in WORDS:
        text = " ".join([word] * 5)
        tokens = set(tokenizer(text, add_special_tokens=False)["input_ids"])
        if not tokens & used:
            documents.append(text)
            used |= tokens
    assert len(documents) >= 12
    return documents


def make_source(hf_model: Any, tokenizer: Any, **settings: Any) -> LLMSource:
    from datasets import Dataset

    dataset = Dataset.from_list([{"text": text} for text in distinct_documents(tokenizer)])
    values: dict[str, Any] = {"model": hf_model, "hook_name": "transformer.h.0", "dataset": dataset,
                              "context_size": 16, "store_batch_size_prompts": 2, "n_batches_in_buffer": 2,
                              "n_eval_batches": 2, "eval_batch_size_prompts": 1, "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values))


def shared_tokens(source: LLMSource, tokenizer: Any) -> set[int]:
    """Tokens of the eval prompts that also occur in two passes' worth of training prompts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the training stream starts its second pass
        training = source.stream.next_prompts(16)
    assert source.stream.position.epoch >= 1
    return (set(source.eval_tokens().flatten().tolist()) & set(training.flatten().tolist())) - {
        tokenizer.bos_token_id}


def test_no_eval_prompt_is_trained_on(hf_model: Any, tokenizer: Any) -> None:
    assert shared_tokens(make_source(hf_model, tokenizer), tokenizer)  # by default the evals reuse training data
    held_out = make_source(hf_model, tokenizer, hold_out_eval_prompts=True)
    assert shared_tokens(held_out, tokenizer) == set()
    for rank in range(2):
        share = make_source(hf_model, tokenizer, hold_out_eval_prompts=True)
        share.shard_for_rank(rank, 2)
        assert shared_tokens(share, tokenizer) == set()
        assert torch.equal(share.eval_tokens(), held_out.eval_tokens())


def test_holding_out_more_than_the_dataset_is_refused(hf_model: Any, tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match=r"hold_out_eval_prompts=True, but the 40 eval prompts .*need more than "
                                          r"the whole dataset"):
        make_source(hf_model, tokenizer, hold_out_eval_prompts=True, n_eval_batches=20, eval_batch_size_prompts=2)
