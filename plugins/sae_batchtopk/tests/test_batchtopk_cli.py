"""``saecore train --arch batchtopk`` trains on the synthetic source and writes a JumpReLU SAE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saecore import SAE
from saecore.cli.main import main


def test_cli_trains_batchtopk_and_saves_jumprelu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "run"
    code = main([
        "train", "--arch", "batchtopk", "--k", "8", "--training-tokens", "4000", "--train-batch-size-tokens", "1000",
        "--n-eval-batches", "2", "--output-path", str(output), "--verbose", "false",
    ])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"saved to             {output}" in printed.out
    sae = SAE.load_from_disk(output)
    assert type(sae).__name__ == "JumpReLUSAE"
    cfg = json.loads((output / "cfg.json").read_text())
    assert cfg["metadata"]["training_architecture"] == "batchtopk"
    threshold = sae.threshold.detach()
    assert float(threshold.min()) == float(threshold.max()) > 0
    runner_cfg = json.loads((output / "runner_cfg.json").read_text())
    assert runner_cfg["sae"]["architecture"] == "batchtopk" and runner_cfg["sae"]["k"] == 8
