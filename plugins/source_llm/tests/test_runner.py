"""The SAELens-shaped runner: the migration guide's example validates, and a local run trains and saves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from saecore_source_llm import (
    LanguageModelSAERunnerConfig,
    LanguageModelSAETrainingRunner,
    LLMSourceConfig,
    SAETrainingRunner,
)

from saecore.training import LoggingConfig, TrainingRunnerConfig

# migrating-to-v6.md's example, with only its import line changed (sae_lens -> saecore).
SEED_EXAMPLE = '''
from saecore import LanguageModelSAERunnerConfig, StandardTrainingSAEConfig, LoggingConfig

cfg = LanguageModelSAERunnerConfig(
    # SAE Parameters
    sae=StandardTrainingSAEConfig(
        d_in=1024,
        d_sae=16384,
        apply_b_dec_to_input=True,
        normalize_activations="expected_average_only_in",
        l1_coefficient=5,
    ),
    # Data Generating Function (Model + Training Distibuion)
    model_name="tiny-stories-1L-21M",
    hook_name="blocks.0.hook_mlp_out",
    dataset_path="apollo-research/roneneldan-TinyStories-tokenizer-gpt2",
    is_dataset_tokenized=True,
    streaming=True,
    # Training Parameters
    lr=5e-5,
    train_batch_size_tokens=4096,
    context_size=512,
    n_batches_in_buffer=64,
    training_tokens=100_000_000,
    store_batch_size_prompts=16,
    # WANDB
    logger=LoggingConfig(
        log_to_wandb=True,
        wandb_project="sae_lens_tutorial",
    ),
    # Misc
    device=device,
    seed=42,
    n_checkpoints=0,
    checkpoint_path="checkpoints",
    dtype="float32",
)
'''


def test_the_migration_guide_example_constructs_and_maps_onto_the_core_runner() -> None:
    namespace: dict[str, Any] = {"device": "cpu"}
    exec(SEED_EXAMPLE, namespace)
    cfg = namespace["cfg"]
    assert type(cfg) is LanguageModelSAERunnerConfig
    runner_cfg = cfg.to_runner_config()
    assert isinstance(runner_cfg, TrainingRunnerConfig)
    source = runner_cfg.source
    assert isinstance(source, LLMSourceConfig)
    assert (source.model_name, source.hook_name, source.dataset_path) == (
        "tiny-stories-1L-21M", "blocks.0.hook_mlp_out", "apollo-research/roneneldan-TinyStories-tokenizer-gpt2")
    assert (source.context_size, source.n_batches_in_buffer, source.store_batch_size_prompts) == (512, 64, 16)
    assert source.is_dataset_tokenized is True and source.streaming is True
    assert (runner_cfg.lr, runner_cfg.train_batch_size_tokens, runner_cfg.training_tokens) == (5e-5, 4096, 100_000_000)
    assert runner_cfg.logger.wandb_project == "sae_lens_tutorial" and runner_cfg.seed == 42
    assert runner_cfg.sae.l1_coefficient == 5 and runner_cfg.sae.dtype == "float32"
    assert LanguageModelSAERunnerConfig.from_dict(cfg.to_dict()) == cfg


def standard_sae(**fields: Any) -> Any:
    from saecore import StandardTrainingSAEConfig

    return StandardTrainingSAEConfig(d_in=32, d_sae=64, **fields)


def test_a_buffer_smaller_than_two_batches_is_rejected_naming_the_fields() -> None:
    with pytest.raises(ValidationError, match=r"n_batches_in_buffer=20 × store_batch_size_prompts=1 .*"
                                              r"train_batch_size_tokens=4096"):
        LanguageModelSAERunnerConfig(sae=standard_sae(), store_batch_size_prompts=1)
    assert LanguageModelSAERunnerConfig(sae=standard_sae()).n_batches_in_buffer == 20  # defaults are valid


def test_sae_given_as_a_dict_and_dtype() -> None:
    cfg = LanguageModelSAERunnerConfig(sae={"architecture": "standard", "d_in": 32, "d_sae": 64}, dtype="torch.float64")
    assert cfg.dtype == "float64" and cfg.sae_config().dtype == "float64" and cfg.sae.dtype == "float32"
    with pytest.raises(ValidationError, match="set one of them"):
        LanguageModelSAERunnerConfig(sae=standard_sae(dtype="float32"), dtype="float64")


def tiny_run(output: Path, **fields: Any) -> LanguageModelSAERunnerConfig:
    values: dict[str, Any] = {
        "sae": standard_sae(), "context_size": 16, "store_batch_size_prompts": 4, "n_batches_in_buffer": 4,
        "train_batch_size_tokens": 64, "training_tokens": 64 * 12, "n_batches_for_norm_estimate": 2,
        "n_eval_batches": 1, "output_path": str(output), "verbose": False, "logger": LoggingConfig(log_to_wandb=False),
    }
    values.update(fields)
    return LanguageModelSAERunnerConfig(**values)


def test_training_from_a_local_model_folder_saves_the_source_metadata(model_dir: Path, text_dir: Path,
                                                                      tmp_path: Path) -> None:
    cfg = tiny_run(tmp_path / "out", model_name=str(model_dir), hook_name="blocks.1.hook_resid_post",
                   dataset_path=str(text_dir))
    runner = LanguageModelSAETrainingRunner(cfg)
    sae = runner.run()
    assert runner.summary is not None and runner.summary.n_tokens == 64 * 12
    assert sae.W_dec.shape == (64, 32)
    metadata = json.loads((tmp_path / "out" / "cfg.json").read_text())["metadata"]
    assert (metadata["model_name"], metadata["hook_name"], metadata["context_size"], metadata["dataset_path"]) == (
        str(model_dir), "blocks.1.hook_resid_post", 16, str(text_dir))
    assert metadata["prepend_bos"] is True and metadata["model_class_name"] in ("TransformerBridge",
                                                                                 "HookedTransformer")


def test_the_seed_makes_runs_repeatable(hf_model: Any, text_dir: Path, tmp_path: Path) -> None:
    def train(seed: int, name: str) -> torch.Tensor:
        cfg = tiny_run(tmp_path / name, seed=seed, hook_name="transformer.h.1", dataset_path=str(text_dir))
        return LanguageModelSAETrainingRunner(cfg, override_model=hf_model).run().W_dec.detach().clone()

    first = train(7, "a")
    assert torch.equal(first, train(7, "b"))
    assert not torch.equal(first, train(8, "c"))
    saved = TrainingRunnerConfig.from_dict(json.loads((tmp_path / "a" / "runner_cfg.json").read_text()))
    assert saved.source.model is None and saved.source.hook_name == "transformer.h.1"  # the object is not saved


def test_the_old_runner_name_still_works_and_warns(hf_model: Any, corpus: list[str], tmp_path: Path) -> None:
    from datasets import Dataset

    cfg = tiny_run(tmp_path / "old", hook_name="transformer.h.0")
    dataset = Dataset.from_list([{"text": text} for text in corpus])
    with pytest.deprecated_call(match="use LanguageModelSAETrainingRunner"):
        runner = SAETrainingRunner(cfg, override_dataset=dataset, override_model=hf_model)
    assert isinstance(runner, LanguageModelSAETrainingRunner)
    assert runner.runner_cfg.source.dataset is dataset and runner.runner_cfg.source.model is hf_model
