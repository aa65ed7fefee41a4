"""A trained BatchTopK SAE is a JumpReLU SAE on disk, loadable with only the core and saecore-sae-jumprelu."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from batchtopk_reference import random_parameters
from saecore_sae_batchtopk.batchtopk_sae import BatchTopKTrainingSAE
from saecore_sae_batchtopk.config import BatchTopKTrainingSAEConfig
from safetensors.torch import load_file

from saecore import SAE, TrainingSAE

D_IN, D_SAE = 8, 24
THETA = 0.35

# Runs in a fresh interpreter that may discover only the jumprelu plugin, and that could not
# import this package even if it tried (a None entry in sys.modules makes the import fail).
LOAD_WITHOUT_THIS_PLUGIN = """
import json, sys
sys.modules["saecore_sae_batchtopk"] = None
import torch
from saecore import SAE, get_registry
folder, x = sys.argv[1], torch.load(sys.argv[2])
sae = SAE.load_from_disk(folder, dtype="float64")
registry = get_registry()
print(json.dumps({
    "class": type(sae).__name__,
    "plugins": sorted(registry.plugins),
    "training_recipes": sorted(registry.training_recipes),
    "encode": sae.encode(x).tolist(),
    "forward": sae(x).tolist(),
}))
"""


def trained_like_sae(dtype: str = "float64", **fields: Any) -> BatchTopKTrainingSAE[Any]:
    """Random weights (decoder norms far from 1) and a threshold, as after some training.

    In eval mode: its encode applies the threshold, as the saved JumpReLU SAE does.
    """
    cfg = BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=3, dtype=dtype, **fields)
    sae: BatchTopKTrainingSAE[Any] = BatchTopKTrainingSAE(cfg)
    with torch.no_grad():
        for name, value in random_parameters(D_IN, D_SAE, seed=2).items():
            getattr(sae, name).copy_(value)
    sae.topk_threshold = torch.tensor(THETA, dtype=torch.float64)
    return sae.eval()


def inputs(n: int) -> torch.Tensor:
    return torch.randn(n, D_IN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.mark.parametrize("rescale", [True, False])
def test_saved_file_is_a_jumprelu_sae_with_the_learned_threshold(tmp_path: Path, rescale: bool) -> None:
    sae = trained_like_sae(rescale_acts_by_decoder_norm=rescale)
    sae.save_inference_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu"
    assert "k" not in cfg and "rescale_acts_by_decoder_norm" not in cfg
    assert cfg["metadata"]["training_architecture"] == "batchtopk"
    details = cfg["metadata"]["training_architecture_details"]
    assert details == {"decoder_init_norm": 0.1, "k": 3.0, "topk_threshold_lr": 0.01, "aux_loss_coefficient": 1.0,
                       "rescale_acts_by_decoder_norm": rescale}
    tensors = load_file(tmp_path / "sae_weights.safetensors")
    assert sorted(tensors) == ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]
    assert tensors["threshold"].dtype == torch.float64
    torch.testing.assert_close(tensors["threshold"], torch.full((D_SAE,), THETA, dtype=torch.float64))
    norms = tensors["W_dec"].norm(dim=1)
    expected_norms = torch.ones(D_SAE, dtype=torch.float64) if rescale else sae.W_dec.detach().norm(dim=1)
    torch.testing.assert_close(norms, expected_norms)


@pytest.mark.parametrize("rescale", [True, False])
def test_loaded_jumprelu_sae_gives_the_training_sae_outputs(tmp_path: Path, rescale: bool) -> None:
    sae = trained_like_sae(rescale_acts_by_decoder_norm=rescale)
    x = inputs(16)
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path, dtype="float64")
    assert type(loaded).__name__ == "JumpReLUSAE"
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), sae.encode(x), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loaded(x), sae(x), rtol=1e-10, atol=1e-12)
    assert 0 < int((sae.encode(x) > 0).sum()) < x.shape[0] * D_SAE


def test_float32_sae_saves_a_float32_threshold(tmp_path: Path) -> None:
    trained_like_sae(dtype="float32").save_inference_model(tmp_path)
    threshold = load_file(tmp_path / "sae_weights.safetensors")["threshold"]
    assert threshold.dtype == torch.float32
    assert torch.all(threshold == torch.tensor(THETA, dtype=torch.float32))


def test_scale_folded_before_saving_divides_the_threshold(tmp_path: Path) -> None:
    sae = trained_like_sae()
    sae.fold_activation_norm_scaling_factor(4.0)
    sae.save_inference_model(tmp_path)
    threshold = load_file(tmp_path / "sae_weights.safetensors")["threshold"]
    torch.testing.assert_close(threshold, torch.full((D_SAE,), THETA / 4.0, dtype=torch.float64))


def test_checkpoint_round_trip_keeps_the_float64_threshold(tmp_path: Path) -> None:
    sae = trained_like_sae(dtype="float32")
    sae.topk_threshold = torch.tensor(0.1234567890123, dtype=torch.float64)
    sae.save_model(tmp_path)
    loaded = TrainingSAE.load_from_disk(tmp_path)
    assert isinstance(loaded, BatchTopKTrainingSAE)
    assert loaded.topk_threshold.dtype == torch.float64
    assert float(loaded.topk_threshold) == 0.1234567890123
    loaded.eval()
    x = inputs(5).float()
    with torch.no_grad():
        assert torch.equal(loaded(x), sae(x))


def test_saved_sae_loads_with_only_the_core_and_the_jumprelu_plugin(tmp_path: Path) -> None:
    sae = trained_like_sae()
    x = inputs(6)
    sae.save_inference_model(tmp_path / "sae")
    torch.save(x, tmp_path / "x.pt")
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAECORE_")}
    env["SAECORE_PLUGINS"] = "sae_jumprelu"
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_THIS_PLUGIN, str(tmp_path / "sae"), str(tmp_path / "x.pt")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["class"] == "JumpReLUSAE"
    assert "sae_batchtopk" not in report["plugins"] and "batchtopk" not in report["training_recipes"]
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(report["encode"], dtype=torch.float64), sae.encode(x))
        torch.testing.assert_close(torch.tensor(report["forward"], dtype=torch.float64), sae(x))
