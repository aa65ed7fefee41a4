"""Latents that fire negative count: firing counts, sparsity.safetensors and cfg.json's L0 agree with the summary.

The fixture keeps exactly k latents per input, of both signs; counting only positive
activations would record about k/2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fixtures.signed_topk import SIGNED_TOPK, SignedTopKPlugin, SignedTopKTrainingSAEConfig
from safetensors.torch import load_file
from training_helpers import ToySourceConfig, make_config

from saecore import TrainingSAE
from saecore.registry import add_in_process_plugin, remove_in_process_plugin
from saecore.training import SAETrainingRunner
from saecore.training_sae import TrainStepInput

K = 4


@pytest.fixture(autouse=True)
def signed_topk_registered() -> Iterator[None]:
    add_in_process_plugin(SignedTopKPlugin(), SIGNED_TOPK)
    yield
    remove_in_process_plugin(SIGNED_TOPK)


def test_firing_counts_count_negative_activations() -> None:
    sae = TrainingSAE.from_dict({"architecture": SIGNED_TOPK, "d_in": 8, "d_sae": 32, "k": K})
    step = TrainStepInput(sae_in=torch.randn(64, 8), coefficients={}, dead_neuron_mask=None, n_training_steps=0)
    output = sae.training_forward_pass(step)
    assert bool((output.feature_acts < 0).any()) and bool((output.feature_acts > 0).any())
    assert int(output.latent_firing_counts().sum()) == 64 * K


def test_saved_l0_and_sparsity_agree_with_the_summary(tmp_path: Path) -> None:
    # The offset keeps every input nonzero, so no pre-activation is exactly 0 and every input keeps k latents.
    sae = SignedTopKTrainingSAEConfig(d_in=8, d_sae=32, k=K)
    cfg = make_config(tmp_path, sae=sae, source=ToySourceConfig(offset=0.5), feature_sampling_window=40)
    runner = SAETrainingRunner(cfg)
    runner.run()
    assert runner.summary is not None
    assert runner.summary.l0 == pytest.approx(K)
    saved_l0 = json.loads((tmp_path / "output" / "cfg.json").read_text())["metadata"]["l0"]
    assert saved_l0 == pytest.approx(K)
    frequencies = 10 ** load_file(tmp_path / "output" / "sparsity.safetensors")["sparsity"].double()
    assert float(frequencies.sum()) == pytest.approx(K, rel=1e-6)
