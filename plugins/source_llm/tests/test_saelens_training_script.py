"""A training script written the way SAELens's training guide writes one runs with only its import line changed.

The guide trains on a Hub model and dataset for 30,000 steps; here the names and sizes are
variables the test fills with a tiny local model, local text and a few steps, and wandb
logging is a variable too (off: no network). Everything else is the guide's shape:
step-derived schedule lengths, a StandardTrainingSAEConfig with an L1 warm-up, SAELens's
trainer fields (``dead_feature_threshold`` included) and ``.run()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

SAELENS_STYLE_SCRIPT = '''
import torch
from saecore import (
    LanguageModelSAERunnerConfig,
    LanguageModelSAETrainingRunner,
    LoggingConfig,
    StandardTrainingSAEConfig,
)

device = "cuda" if torch.cuda.is_available() else "cpu"

total_training_steps = total_steps
batch_size = batch_tokens
total_training_tokens = total_training_steps * batch_size

lr_warm_up_steps = 0
lr_decay_steps = total_training_steps // 5  # 20% of training
l1_warm_up_steps = total_training_steps // 20  # 5% of training

cfg = LanguageModelSAERunnerConfig(
    # Data generating function (model + training distribution)
    model_name=model_name,
    hook_name="blocks.0.hook_mlp_out",
    dataset_path=dataset_path,
    is_dataset_tokenized=False,
    streaming=True,
    # SAE parameters
    sae=StandardTrainingSAEConfig(
        d_in=d_model,
        d_sae=16 * d_model,
        apply_b_dec_to_input=False,
        normalize_activations="expected_average_only_in",
        l1_coefficient=5,
        l1_warm_up_steps=l1_warm_up_steps,
    ),
    # Training parameters
    lr=5e-5,
    adam_beta1=0.9,
    adam_beta2=0.999,
    lr_scheduler_name="constant",
    lr_warm_up_steps=lr_warm_up_steps,
    lr_decay_steps=lr_decay_steps,
    train_batch_size_tokens=batch_size,
    # Activation store parameters
    context_size=context_size,
    n_batches_in_buffer=n_batches_in_buffer,
    training_tokens=total_training_tokens,
    store_batch_size_prompts=store_batch_size_prompts,
    # Resampling protocol
    feature_sampling_window=1000,
    dead_feature_window=1000,
    dead_feature_threshold=1e-4,
    # WANDB
    logger=LoggingConfig(
        log_to_wandb=log_to_wandb,
        wandb_project="sae_lens_tutorial",
        wandb_log_frequency=30,
        eval_every_n_wandb_logs=20,
    ),
    # Misc
    device=device,
    seed=42,
    n_checkpoints=0,
    checkpoint_path=checkpoint_path,
    output_path=output_path,
    dtype="float32",
)
sparse_autoencoder = LanguageModelSAETrainingRunner(cfg).run()
'''


def test_the_training_guide_script_runs_with_only_the_import_changed(model_dir: Path, text_dir: Path,
                                                                     tmp_path: Path) -> None:
    namespace: dict[str, Any] = {
        "model_name": str(model_dir), "dataset_path": str(text_dir), "d_model": 32, "total_steps": 10,
        "batch_tokens": 64, "context_size": 16, "n_batches_in_buffer": 4, "store_batch_size_prompts": 4,
        "log_to_wandb": False, "checkpoint_path": str(tmp_path / "checkpoints"),
        "output_path": str(tmp_path / "output"),
    }
    with pytest.warns(UserWarning, match="dead_feature_threshold=0.0001 has no effect"):
        exec(SAELENS_STYLE_SCRIPT, namespace)
    sae = namespace["sparse_autoencoder"]
    assert sae.W_dec.shape == (512, 32) and torch.isfinite(sae.W_dec).all()
    assert (tmp_path / "output" / "cfg.json").is_file() and (tmp_path / "output" / "runner_cfg.json").is_file()
    assert namespace["cfg"].sae.l1_warm_up_steps == 0 and namespace["cfg"].lr_decay_steps == 2
