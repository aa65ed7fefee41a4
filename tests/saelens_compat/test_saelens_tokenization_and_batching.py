"""``saecore.tokenization_and_batching`` against SAELens 6.54's on the same token streams and conversations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_language_model import corpus, write_tokenizer

sae_lens = pytest.importorskip("sae_lens")
transformers = pytest.importorskip("transformers")

from sae_lens import tokenization_and_batching as saelens_batching  # noqa: E402

from saecore import tokenization_and_batching as batching  # noqa: E402

BOS, SEP, START = 1, 2, 3
SETTINGS = {
    "plain": {},
    "bos": {"begin_batch_token_id": BOS},
    "bos-and-separator": {"begin_batch_token_id": BOS, "sequence_separator_token_id": SEP},
    "sequence-start": {"begin_sequence_token_id": START},
    "all-markers": {"begin_batch_token_id": BOS, "begin_sequence_token_id": START, "sequence_separator_token_id": SEP},
    "unconcatenated": {"begin_batch_token_id": BOS, "disable_concat_sequences": True},
    "unconcatenated-sequence-start": {"begin_sequence_token_id": START, "disable_concat_sequences": True},
}


def token_sequences(seed: int) -> list[torch.Tensor]:
    """Documents of 1 to 20 tokens, some already opening with a marker token."""
    generator = torch.Generator().manual_seed(seed)
    sequences = []
    for _ in range(30):
        length = int(torch.randint(1, 21, (1,), generator=generator))
        sequence = torch.randint(4, 50, (length,), generator=generator)
        if torch.rand(1, generator=generator) < 0.3:
            sequence[0] = int(torch.randint(1, 4, (1,), generator=generator))
        sequences.append(sequence)
    return sequences


@pytest.mark.parametrize("context_size", [2, 3, 8])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_prompts_match_saelens(name: str, context_size: int) -> None:
    sequences = token_sequences(seed=context_size)
    ours = list(batching.concat_and_batch_sequences(iter(sequences), context_size, **SETTINGS[name]))
    theirs = list(saelens_batching.concat_and_batch_sequences(iter(sequences), context_size, **SETTINGS[name]))
    assert len(ours) == len(theirs) > 0
    for prompt, expected in zip(ours, theirs, strict=True):
        assert prompt.dtype == expected.dtype
        assert torch.equal(prompt, expected)


def test_refusals_name_the_problem() -> None:
    with pytest.raises(ValueError, match="context_size"):
        next(batching.concat_and_batch_sequences(iter([torch.arange(4)]), 0))
    with pytest.raises(ValueError, match="1D"):
        next(batching.concat_and_batch_sequences(iter([torch.zeros(2, 2, dtype=torch.long)]), 3))


def test_chat_template_tokens_match(tmp_path: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(write_tokenizer(tmp_path, corpus(10, seed=2))))
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    conversation = [{"role": "user", "content": "the cat sat"}, {"role": "assistant", "content": "on the mat"}]
    ours = batching.tokenize_with_chat_template(conversation, tokenizer)
    assert ours.dim() == 1
    assert torch.equal(ours, saelens_batching.tokenize_with_chat_template(conversation, tokenizer))
