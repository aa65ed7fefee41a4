"""The prefetch thread changes when activations are computed, never which ones are served."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from saecore_source_llm import LLMSource, LLMSourceConfig
from saecore_source_llm.prefetch import Prefetcher

from saecore import StandardSAE, StandardSAEConfig
from saecore.training.checkpoint import serialize_weights_only


def make_source(hf_model: Any, text_dir: Path, seed: int = 0, **settings: Any) -> LLMSource:
    values: dict[str, Any] = {"model": hf_model, "hook_name": "transformer.h.0", "dataset_path": str(text_dir),
                              "context_size": 16, "store_batch_size_prompts": 4, "n_batches_in_buffer": 3,
                              "exclude_special_tokens": True, "n_eval_batches": 1, "verbose": False}
    values.update(settings)
    return LLMSource(LLMSourceConfig(**values), seed=seed)


def draw(source: LLMSource, count: int, size: int = 24) -> list[torch.Tensor]:
    return [source.next_batch(size) for _ in range(count)]


@pytest.mark.parametrize("prefetch", [True, 1, 5])
def test_prefetching_serves_the_same_batches(hf_model: Any, text_dir: Path, prefetch: int | bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plain = draw(make_source(hf_model, text_dir), 30)
        source = make_source(hf_model, text_dir, prefetch_llm_batches=prefetch)
        prefetched = draw(source, 30)
    source.close()
    assert all(torch.equal(a, b) for a, b in zip(plain, prefetched))


def test_true_prefetches_one_refill(hf_model: Any, text_dir: Path) -> None:
    source = make_source(hf_model, text_dir, prefetch_llm_batches=True, n_batches_in_buffer=6,
                         activations_mixing_fraction=0.5)
    assert source.prefetch_chunks == 3  # half of 6 forward passes' activations are refilled at a time
    assert "+ 3 forward passes prefetched" in source.memory_report
    with pytest.raises(ValidationError, match="prefetch_llm_batches"):
        LLMSourceConfig(prefetch_llm_batches=-1)


def test_a_prefetching_source_saves_and_resumes_exactly(hf_model: Any, text_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        original = make_source(hf_model, text_dir, prefetch_llm_batches=4)
        draw(original, 9)
        time.sleep(0.2)  # let the thread run ahead of what the buffer has taken
        assert original.stream.position != original._consumed_position
        saved = torch.load(io.BytesIO(serialize_weights_only(original.state_dict(), "state")), weights_only=True)
        expected = draw(original, 20)
        original.close()
        for prefetch in (0, 2):
            resumed = make_source(hf_model, text_dir, seed=5, prefetch_llm_batches=prefetch)
            resumed.load_state_dict(saved)
            assert all(torch.equal(a, b) for a, b in zip(expected, draw(resumed, 20)))
            resumed.close()


def test_evaluating_while_prefetching_leaves_the_batches_alone(hf_model: Any, text_dir: Path) -> None:
    sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        plain_source = make_source(hf_model, text_dir)
        plain = draw(plain_source, 12)
        expected_metrics = plain_source.evaluate_sae(sae, 2.0)
        source = make_source(hf_model, text_dir, prefetch_llm_batches=3)
        batches = draw(source, 4)
        metrics = source.evaluate_sae(sae, 2.0)  # the thread is running the model meanwhile
        batches += draw(source, 8)
    source.close()
    assert all(torch.equal(a, b) for a, b in zip(plain, batches))
    assert metrics == expected_metrics


def test_the_prefetcher_keeps_order_raises_errors_and_stops() -> None:
    def numbers() -> Iterator[int]:
        yield from range(5)
        raise RuntimeError("the producer failed")

    prefetcher = Prefetcher(numbers(), size=2, name="test")
    assert [next(prefetcher) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="the producer failed"):
        next(prefetcher)
    endless = Prefetcher(iter(range(10**9)), size=3, name="test-endless")
    assert next(endless) == 0
    endless.close()
    assert not any(thread.name == "test-endless" for thread in threading.enumerate())
    assert list(Prefetcher(iter([1, 2]), size=1, name="test-short")) == [1, 2]


def test_a_prefetcher_left_open_does_not_abort_the_interpreter_at_exit() -> None:
    script = (
        "import torch\n"
        "from saecore_source_llm.prefetch import Prefetcher\n"
        "def produce():\n"
        "    a = torch.randn(384, 384)\n"
        "    while True:\n"
        "        yield a @ a\n"
        "p = Prefetcher(produce(), 2, name='left-open')\n"
        "next(p)\n"
    )
    for _ in range(3):  # without the exit hook the abort came in most runs, not all
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
