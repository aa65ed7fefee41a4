"""`saecore plugins` and `saecore info`, run as a user runs them (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from saecore import SAE


def saecore_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saecore", *args], capture_output=True, text=True)


def test_plugins_table_lists_distribution_version_and_registrations() -> None:
    result = saecore_cli("plugins")
    assert result.returncode == 0, result.stderr
    line = next(row for row in result.stdout.splitlines() if row.startswith("saecore-sae-standard"))
    assert "0.1.0" in line
    assert "architectures: standard" in line
    assert "training recipes: standard" in line


def test_plugins_json_matches_the_registry() -> None:
    result = saecore_cli("plugins", "--json")
    data = json.loads(result.stdout)
    rows = {row["distribution"]: row for row in data["plugins"]}
    assert rows["saecore-sae-standard"]["architectures"] == ["standard"]
    assert "standard" in data["architectures"]
    assert "synthetic" in data["sources"]


def test_info_describes_a_saved_sae(tmp_path: Path) -> None:
    sae = SAE.from_dict({"architecture": "standard", "d_in": 6, "d_sae": 10, "dtype": "float64",
                         "metadata": {"model_name": "toy-model", "hook_name": "blocks.0.hook_resid_post"}})
    sae.save_model(tmp_path / "sae")
    result = saecore_cli("info", str(tmp_path / "sae"))
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines() if line and not line.startswith(" ")
                  and not line.endswith(":"))
    assert fields["architecture"] == "standard"
    assert fields["d_in"] == "6"
    assert fields["d_sae"] == "10"
    assert fields["dtype"] == "float64"
    assert fields["plugin"] == "saecore-sae-standard 0.1.0"
    assert '"toy-model"' in result.stdout
    as_json = json.loads(saecore_cli("info", str(tmp_path / "sae"), "--json").stdout)
    assert as_json["metadata"]["hook_name"] == "blocks.0.hook_resid_post"


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cfg.json").write_text("{not json")
    torch.save({}, tmp_path / "broken" / "unused.pt")
    result = saecore_cli("info", str(tmp_path / "broken"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "cfg.json: not valid JSON" in result.stderr.splitlines()[0]
    debug = saecore_cli("--debug", "info", str(tmp_path / "broken"))
    assert "Traceback" in debug.stderr


def test_unknown_release_lists_no_traceback() -> None:
    result = saecore_cli("info", "not-a-release", "x")
    assert result.returncode == 1
    assert "neither a known release nor a Hugging Face repo id" in result.stderr
