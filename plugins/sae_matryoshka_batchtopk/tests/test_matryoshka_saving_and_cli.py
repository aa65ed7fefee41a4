"""Training through the CLI writes a JumpReLU SAE that remembers its Matryoshka levels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from saecore_sae_matryoshka_batchtopk.config import MatryoshkaBatchTopKTrainingSAEConfig
from saecore_sae_matryoshka_batchtopk.matryoshka_sae import MatryoshkaBatchTopKTrainingSAE

from saecore import SAE
from saecore.cli.main import main


def test_saved_sae_is_jumprelu_with_identical_outputs(tmp_path: Path) -> None:
    cfg = MatryoshkaBatchTopKTrainingSAEConfig(d_in=8, d_sae=24, k=3, matryoshka_widths=[6], dtype="float64")
    sae = MatryoshkaBatchTopKTrainingSAE(cfg)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, 24, dtype=torch.float64).unsqueeze(1))
        sae.b_enc.fill_(0.05)
    sae.topk_threshold = torch.tensor(0.02, dtype=torch.float64)
    sae.eval()  # the threshold, not the batch selection
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path, dtype="float64")
    assert type(loaded).__name__ == "JumpReLUSAE"
    x = torch.randn(9, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), sae(x), rtol=1e-10, atol=1e-12)
    metadata = json.loads((tmp_path / "cfg.json").read_text())["metadata"]
    assert metadata["training_architecture"] == "matryoshka_batchtopk"
    assert metadata["training_architecture_details"]["matryoshka_widths"] == [6, 24]


def test_cli_trains_matryoshka_batchtopk(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "run"
    code = main([
        "train", "--arch", "matryoshka_batchtopk", "--k", "8", "--matryoshka-widths", "[32, 128]",
        "--training-tokens", "4000", "--train-batch-size-tokens", "1000", "--n-eval-batches", "2",
        "--output-path", str(output), "--verbose", "false",
    ])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"saved to             {output}" in printed.out
    assert type(SAE.load_from_disk(output)).__name__ == "JumpReLUSAE"
    runner_cfg = json.loads((output / "runner_cfg.json").read_text())
    assert runner_cfg["sae"]["matryoshka_widths"] == [32, 128, 512]

