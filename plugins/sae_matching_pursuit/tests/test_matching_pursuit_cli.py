"""``saecore train --arch matching_pursuit`` trains on the synthetic source with the recipe's presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from saecore import SAE
from saecore.cli.main import main


def test_cli_trains_matching_pursuit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "run"
    code = main([
        "train", "--arch", "matching_pursuit", "--training-tokens", "4000", "--train-batch-size-tokens", "1000",
        "--n-eval-batches", "2", "--output-path", str(output), "--verbose", "false",
    ])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    sae = SAE.load_from_disk(output)
    assert type(sae).__name__ == "MatchingPursuitSAE"
    cfg = json.loads((output / "cfg.json").read_text())
    assert cfg["max_iterations"] == 8
    assert cfg["metadata"]["training_architecture"] == "matching_pursuit"
