"""``PretokenizeRunner``: text packed into prompts by the llm source's rules, saved as SAELens saves it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig, PretokenizeRunner, PretokenizeRunnerConfig
from saecore_source_llm.pretokenize import pretokenize_runner

from saecore import ConfigError

CONTEXT = 16


def config(model_dir: Path, text_dir: Path, **fields: Any) -> PretokenizeRunnerConfig:
    settings = {"tokenizer_name": str(model_dir), "dataset_path": str(text_dir), "context_size": CONTEXT,
                "num_proc": 1, "shuffle": False}
    return PretokenizeRunnerConfig(**{**settings, **fields})


def test_prompts_are_the_ones_the_llm_source_packs(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    dataset = PretokenizeRunner(config(model_dir, text_dir, save_path=str(tmp_path / "tokens"))).run()
    prompts = dataset[:]["input_ids"]
    source = LLMSource(LLMSourceConfig(model_name=str(model_dir), model_class_name="AutoModelForCausalLM",
                                       hook_name="transformer.h.0", dataset_path=str(text_dir),
                                       context_size=CONTEXT, verbose=False))
    assert torch.equal(prompts, source.stream.next_prompts(prompts.shape[0]))
    metadata = json.loads((tmp_path / "tokens" / "sae_lens.json").read_text())
    assert metadata["context_size"] == CONTEXT and metadata["original_dataset"] == str(text_dir)


def test_each_document_opens_with_the_begin_sequence_token(model_dir: Path, text_dir: Path, tokenizer: Any) -> None:
    plain = PretokenizeRunner(config(model_dir, text_dir, begin_batch_token=None, sequence_separator_token=None)).run()
    marked = PretokenizeRunner(config(model_dir, text_dir, begin_batch_token=None, sequence_separator_token=None,
                                      begin_sequence_token="eos")).run()
    marked_ids = marked[:]["input_ids"]
    assert marked_ids[0, 0] == tokenizer.eos_token_id
    documents = sum(1 for line in (text_dir / "part-0.jsonl").read_text().splitlines() if line) + sum(
        1 for line in (text_dir / "part-1.jsonl").read_text().splitlines() if line)
    plain_tokens = plain[:]["input_ids"].numel()
    assert marked_ids.numel() > plain_tokens
    assert (marked_ids == tokenizer.eos_token_id).sum() <= documents


def test_one_prompt_per_long_document_without_concatenation(model_dir: Path, text_dir: Path, tokenizer: Any) -> None:
    dataset = PretokenizeRunner(config(model_dir, text_dir, disable_concat_sequences=True)).run()
    prompts = dataset[:]["input_ids"]
    assert prompts.shape[1] == CONTEXT
    assert torch.all(prompts[:, 0] == tokenizer.bos_token_id)
    assert torch.all(prompts[:, 1:] != tokenizer.bos_token_id)


def test_the_function_form_is_deprecated(model_dir: Path, text_dir: Path) -> None:
    with pytest.deprecated_call(match="use PretokenizeRunner"):
        assert len(pretokenize_runner(config(model_dir, text_dir))) > 0


def test_a_misspelled_field_is_named_with_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown field 'contxt_size' \(did you mean 'context_size'"):
        PretokenizeRunnerConfig(contxt_size=8)


def test_streaming_with_several_processes_is_refused(model_dir: Path, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match="num_proc=2: must be 1 when streaming is True"):
        PretokenizeRunner(config(model_dir, text_dir, streaming=True, num_proc=2)).run()


def test_a_streamed_dataset_is_not_saved(model_dir: Path, text_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a streamed dataset cannot be saved; set streaming=False"):
        PretokenizeRunner(config(model_dir, text_dir, streaming=True, save_path=str(tmp_path))).run()


def test_a_special_token_the_tokenizer_lacks_is_named(model_dir: Path, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match="sequence_separator_token='sep': the tokenizer has no sep token"):
        PretokenizeRunner(config(model_dir, text_dir, sequence_separator_token="sep")).run()


def test_chat_formatting_tokenizes_through_the_chat_template(model_dir: Path, text_dir: Path, tmp_path: Path,
                                                             tokenizer: Any) -> None:
    chat = tmp_path / "chat-tokenizer"
    tokenizer.save_pretrained(chat)
    template = "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    settings = json.loads((chat / "tokenizer_config.json").read_text())
    (chat / "tokenizer_config.json").write_text(json.dumps({**settings, "chat_template": template}))
    with pytest.warns(UserWarning, match="each is tokenized as one user message"):
        dataset = PretokenizeRunner(config(chat, text_dir, use_chat_formatting=True, begin_batch_token=None,
                                           sequence_separator_token=None)).run()
    first_document = json.loads((text_dir / "part-0.jsonl").read_text().splitlines()[0])["text"]
    expected = tokenizer.encode(f"user: {first_document}\n")
    assert dataset[:]["input_ids"][0].tolist() == expected[:CONTEXT]


def test_streaming_gives_the_same_prompts(model_dir: Path, text_dir: Path) -> None:
    loaded = PretokenizeRunner(config(model_dir, text_dir)).run()[:]["input_ids"]
    streamed = torch.stack([row["input_ids"] for row in PretokenizeRunner(config(model_dir, text_dir,
                                                                                 streaming=True)).run()])
    assert torch.equal(streamed, loaded)
