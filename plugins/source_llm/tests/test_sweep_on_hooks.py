"""A sweep on a language model: one forward pass per batch feeds an SAE per hook."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from saecore_source_llm import LLMSource, LLMSourceConfig

from saecore import SAE, SAESweepConfig, SAESweepRunner, SweepMember, TopKTrainingSAEConfig, TrainingRunnerConfig

DEEP = "transformer.h.1"
EARLY = "transformer.h.0.attn.c_attn"  # width 96


def _source_config(hf_model: Any, text_dir: Path) -> LLMSourceConfig:
    return LLMSourceConfig(model=hf_model, model_name="tiny-gpt2", hook_name=DEEP, additional_hook_names=[EARLY],
                           dataset_path=str(text_dir), context_size=16, store_batch_size_prompts=4,
                           n_batches_in_buffer=3, verbose=False, eval_batch_size_prompts=4, n_eval_batches=1)


class _Counter:
    calls = 0
    serving = False


@contextlib.contextmanager
def _forward_passes_while_serving(hf_model: Any, source: LLMSource) -> Iterator[_Counter]:
    """Count the model's forward passes made inside ``source.next_batch`` (evaluations excluded)."""
    counter = _Counter()
    serve = source.next_batch

    def counted_next_batch(batch_size: int) -> torch.Tensor:
        counter.serving = True
        try:
            return serve(batch_size)
        finally:
            counter.serving = False

    def count(*_: Any) -> None:
        counter.calls += counter.serving

    source.next_batch = counted_next_batch  # type: ignore[method-assign]
    handle = hf_model.transformer.h[0].register_forward_hook(count)
    try:
        yield counter
    finally:
        handle.remove()


def test_an_sae_per_hook_trains_from_one_forward_pass_and_evaluates_at_its_hook(
    hf_model: Any, text_dir: Path, tmp_path: Path
) -> None:
    source_cfg = _source_config(hf_model, text_dir)
    members = [
        SweepMember(name=name, stream=hook, run=TrainingRunnerConfig(
            sae=TopKTrainingSAEConfig(d_in=width, d_sae=2 * width, k=4), source=source_cfg, training_tokens=640,
            train_batch_size_tokens=64, n_eval_batches=1, output_path=str(tmp_path / name),
            checkpoint_path=str(tmp_path / "checkpoints"), verbose=False,
        ))
        for name, hook, width in (("deep", DEEP, 32), ("early", EARLY, 96))
    ]
    source = LLMSource(source_cfg, seed=42)
    with _forward_passes_while_serving(hf_model, source) as swept:
        runner = SAESweepRunner(SAESweepConfig(members=members), source=source)
        runner.run()
    source.close()
    alone = LLMSource(source_cfg.model_copy(update={"additional_hook_names": []}), seed=42)
    with _forward_passes_while_serving(hf_model, alone) as single:
        for _ in range(10 + 1):  # the sweep's 10 training batches and its one evaluation batch
            alone.next_batch(64)
    alone.close()
    assert single.calls > 0
    assert swept.calls == single.calls  # once per batch for both SAEs: what one hook alone costs

    for name, hook, width in (("deep", DEEP, 32), ("early", EARLY, 96)):
        sae = SAE.load_from_disk(tmp_path / name)
        assert sae.cfg.d_in == width and sae.cfg.metadata.hook_name == hook
        assert json.loads((tmp_path / name / "cfg.json").read_text())["metadata"]["model_name"] == "tiny-gpt2"
        summary = runner.summaries[name]
        assert "ce_loss_score" in summary.source_metrics
        assert torch.isfinite(torch.tensor(summary.source_metrics["ce_loss_score"]))
