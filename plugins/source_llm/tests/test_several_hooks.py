"""Several hooks read in one forward pass: rows are the hooks' activations side by side.

The reference for every column block is a source reading that hook alone, with the same
seed and data, so the shuffled rows must line up exactly.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from saecore_source_llm import LLMSource, LLMSourceConfig

from saecore.errors import ConfigError, SAEFileError
from saecore.training.checkpoint import serialize_weights_only

DEEP = "transformer.h.1"
EARLY = "transformer.h.0.attn.c_attn"  # query, key and value of block 0: width 96


def make_source(hf_model: Any, text_dir: Path, hook_name: str, *additional: str, **settings: Any) -> LLMSource:
    values: dict[str, Any] = {"model": hf_model, "hook_name": hook_name, "additional_hook_names": list(additional),
                              "dataset_path": str(text_dir), "context_size": 16, "store_batch_size_prompts": 4,
                              "n_batches_in_buffer": 3, "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values), seed=7)


def test_each_hooks_columns_equal_a_source_reading_that_hook_alone(hf_model: Any, text_dir: Path) -> None:
    both = make_source(hf_model, text_dir, DEEP, EARLY)
    deep_alone = make_source(hf_model, text_dir, DEEP)
    early_alone = make_source(hf_model, text_dir, EARLY)
    assert both.streams() == {DEEP: 32, EARLY: 96}  # hook_name's columns first, whatever the model's order
    assert both.d_in == 128
    for _ in range(5):  # several refills of the shuffling buffer
        batch = both.next_batch(40)
        assert torch.equal(batch[:, :32], deep_alone.next_batch(40))
        assert torch.equal(batch[:, 32:], early_alone.next_batch(40))


def test_the_forward_pass_stops_after_the_deepest_hook(hf_model: Any, text_dir: Path) -> None:
    source = make_source(hf_model, text_dir, "transformer.h.0.mlp", "transformer.h.0", activations_mixing_fraction=0)
    calls: list[str] = []
    handles = [dict(hf_model.named_modules())[path].register_forward_hook(lambda *args, path=path: calls.append(path))
               for path in ("transformer.h.0", "transformer.h.1")]
    try:
        source.next_batch(64)
    finally:
        for handle in handles:
            handle.remove()
    assert calls and set(calls) == {"transformer.h.0"}


def test_stream_metadata_names_each_hook(hf_model: Any, text_dir: Path) -> None:
    source = make_source(hf_model, text_dir, DEEP, EARLY, model_name="tiny-gpt2")
    single = make_source(hf_model, text_dir, DEEP, model_name="tiny-gpt2").sae_metadata()
    assert source.stream_metadata(DEEP) == single
    assert source.stream_metadata(EARLY) == {**single, "hook_name": EARLY}
    assert source.sae_metadata() == {**single, "additional_hook_names": [EARLY]}
    with pytest.raises(ConfigError, match=r"stream 'transformer.h.2' .*transformer.h.1, transformer.h.0.attn.c_attn"):
        source.stream_metadata("transformer.h.2")


def test_a_two_hook_source_resumes_exactly(hf_model: Any, text_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the small dataset is read more than once
        original = make_source(hf_model, text_dir, DEEP, EARLY)
        for _ in range(5):
            original.next_batch(24)
        saved = torch.load(io.BytesIO(serialize_weights_only(original.state_dict(), "state")), weights_only=True)
        expected = [original.next_batch(24) for _ in range(6)]
        resumed = make_source(hf_model, text_dir, DEEP, EARLY)
        resumed.load_state_dict(saved)
        assert all(torch.equal(resumed.next_batch(24), batch) for batch in expected)
    reordered = make_source(hf_model, text_dir, EARLY, DEEP)
    with pytest.raises(SAEFileError, match=r"reads the hooks .*additional_hook_names"):
        reordered.load_state_dict(saved)
