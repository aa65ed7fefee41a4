"""Bad settings fail early, naming the field, the value and what would work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from saecore_source_llm import LLMSource, LLMSourceConfig
from saecore_source_llm import memory as memory_module
from saecore_source_llm.model_loading import transformer_lens_major

from saecore.errors import ConfigError


def build(hf_model: Any, text_dir: Path, **settings: Any) -> LLMSource:
    values: dict[str, Any] = {"model": hf_model, "hook_name": "transformer.h.1", "dataset_path": str(text_dir),
                              "context_size": 16, "store_batch_size_prompts": 4, "n_batches_in_buffer": 2,
                              "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values))


def test_an_unknown_hook_lists_close_matches(hf_model: Any, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"hook_name='transformer.h.1.mlpp' .*close matches: transformer.h.1.mlp"):
        build(hf_model, text_dir, hook_name="transformer.h.1.mlpp")


def test_an_unknown_additional_hook_lists_close_matches(hf_model: Any, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"additional_hook_names\[1\]='transformer.h.0.attn.c_atn' .*close matches: "
                                          r"transformer.h.0.attn.c_attn"):
        build(hf_model, text_dir, additional_hook_names=["transformer.h.0", "transformer.h.0.attn.c_atn"])


def test_a_hook_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"additional_hook_names\[0\]='blocks.0.hook_mlp_out' repeats hook_name"):
        LLMSourceConfig(additional_hook_names=["blocks.0.hook_mlp_out"])
    with pytest.raises(ValidationError, match=r"additional_hook_names\[1\]='blocks.1.hook_z' repeats an earlier"):
        LLMSourceConfig(additional_hook_names=["blocks.1.hook_z", "blocks.1.hook_z"])


def test_a_head_index_with_additional_hooks_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"hook_head_index=1 cannot be combined with additional_hook_names"):
        LLMSourceConfig(hook_name="blocks.0.attn.hook_z", hook_head_index=1,
                        additional_hook_names=["blocks.1.attn.hook_z"])


def test_a_context_longer_than_the_model_accepts(hf_model: Any, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"context_size=65 .*n_ctx=64.*at most 64"):
        build(hf_model, text_dir, context_size=65)


def test_head_index_needs_a_per_head_hook_and_a_valid_head(hf_model: Any, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"hook_head_index=0 needs a per-head hook"):
        build(hf_model, text_dir, hook_head_index=0)


def test_the_buffer_must_hold_two_training_batches() -> None:
    LLMSourceConfig().check_train_batch_size(4096)  # the defaults fit the trainer's default batch
    LLMSourceConfig(n_batches_in_buffer=64, context_size=512, store_batch_size_prompts=16).check_train_batch_size(4096)
    small = LLMSourceConfig(n_batches_in_buffer=2, store_batch_size_prompts=4, context_size=16)
    with pytest.raises(ConfigError, match=r"holds 128 activations \(n_batches_in_buffer=2 × store_batch_size_prompts"
                                          r"=4 .*train_batch_size_tokens=100.*at least 200"):
        small.check_train_batch_size(100)
    mostly_kept = LLMSourceConfig(n_batches_in_buffer=2, store_batch_size_prompts=4, context_size=16,
                                  activations_mixing_fraction=0.9)
    with pytest.raises(ConfigError, match=r"activations_mixing_fraction=0\.9"):
        mostly_kept.check_train_batch_size(32)


def test_a_batch_the_buffer_cannot_serve_is_refused(hf_model: Any, text_dir: Path) -> None:
    source = build(hf_model, text_dir)
    with pytest.raises(ConfigError, match="train_batch_size_tokens=100"):
        source.check_batch_size(100)
    with pytest.raises(ConfigError, match="cannot serve"):
        source.next_batch(100)


def test_a_buffer_larger_than_free_memory(hf_model: Any, text_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_module, "available_bytes", lambda device: 10_000)
    with pytest.raises(ConfigError, match=r"mixing buffer of 128 activations × d_in 32 .*needs 0.00 GB on cpu but "
                                          r"only 0.00 GB is available; lower n_batches_in_buffer"):
        build(hf_model, text_dir)
    monkeypatch.setattr(memory_module, "available_bytes", lambda device: 30_000)  # (128 + 64) rows × 32 floats fit
    build(hf_model, text_dir)
    with pytest.raises(ConfigError, match=r"× d_in 64 \(32 at transformer.h.1 \+ 32 at transformer.h.0\) .*needs"):
        build(hf_model, text_dir, additional_hook_names=["transformer.h.0"])


def test_separator_and_bos_tokens_must_exist(hf_model: Any, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"sequence_separator_token='sep' needs the tokenizer's sep token"):
        build(hf_model, text_dir, sequence_separator_token="sep")
    assert build(hf_model, text_dir, sequence_separator_token="sep", disable_concat_sequences=True).d_in == 32


def test_missing_data_and_model_paths(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset_path is empty"):
        build(hf_model, text_dir, dataset_path="")
    with pytest.raises(ConfigError, match="no such file or folder"):
        build(hf_model, text_dir, dataset_path=str(tmp_path / "missing.jsonl"))
    with pytest.raises(ConfigError, match="no such model folder"):
        LLMSource(LLMSourceConfig(model_name=str(tmp_path / "no-model"), dataset_path=str(text_dir)))


def test_config_values_are_checked() -> None:
    with pytest.raises(ValidationError, match="keeps no position"):
        LLMSourceConfig(context_size=8, seqpos_slice=(8, None))
    with pytest.raises(ValidationError, match="model_class_name"):
        LLMSourceConfig(model_class_name="GPT2")
    with pytest.raises(ValidationError, match="disagree"):
        LLMSourceConfig(model="gpt2", model_name="pythia")
    assert LLMSourceConfig(model="some/folder").model_name == "some/folder"


@pytest.mark.skipif(transformer_lens_major() != 4, reason="transformer-lens 4 has no HookedTransformer")
def test_hooked_transformer_needs_transformer_lens_3(text_dir: Path, model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs transformer-lens 3\.x"):
        LLMSource(LLMSourceConfig(model_name=str(model_dir), model_class_name="HookedTransformer",
                                  dataset_path=str(text_dir)))


@pytest.mark.skipif(transformer_lens_major() is None, reason="needs transformer-lens")
def test_an_unknown_transformer_lens_hook_lists_close_matches(model_dir: Path, text_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"'blocks.1.hook_resid_pots' .*close matches: blocks.1.hook_resid_post"):
        LLMSource(LLMSourceConfig(model_name=str(model_dir), model_class_name="TransformerBridge",
                                  hook_name="blocks.1.hook_resid_pots", dataset_path=str(text_dir)))


@pytest.mark.parametrize("content", ["", "\n"])
def test_an_empty_data_file_is_named(hf_model: Any, tmp_path: Path, content: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=rf"dataset_path='{path}': has no rows"):
        build(hf_model, tmp_path, dataset_path=str(path))


@pytest.mark.parametrize("bad", [-1, 0])
def test_a_token_id_outside_the_vocabulary_is_named_with_the_vocab_size(hf_model: Any, tmp_path: Path,
                                                                       bad: int) -> None:
    vocab = hf_model.get_input_embeddings().num_embeddings
    wrong = bad if bad < 0 else vocab + bad
    rows = [{"tokens": [1] * 16} for _ in range(8)] + [{"tokens": [1] * 15 + [wrong]}]
    source = build(hf_model, tmp_path, dataset=rows, dataset_path="", store_batch_size_prompts=9)
    with pytest.raises(ConfigError) as caught:
        source.next_batch(16)
    source.close()
    assert str(caught.value).startswith(f"token id {wrong} in the dataset object is outside the model's vocabulary "
                                        f"(vocab size {vocab}: ids 0 to {vocab - 1})")
