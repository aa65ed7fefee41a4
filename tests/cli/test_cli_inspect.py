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


def test_plugins_lists_each_distribution_once_with_all_it_registers() -> None:
    table = saecore_cli("plugins").stdout.splitlines()
    assert [line.split()[0] for line in table].count("saecore") == 1
    core_line = next(line for line in table if line.split()[0] == "saecore")
    assert "sources: cached, synthetic, synthetic_transcoder, tensor" in core_line and "converters: " in core_line
    rows = json.loads(saecore_cli("plugins", "--json").stdout)["plugins"]
    distributions = [row["distribution"] for row in rows]
    assert len(distributions) == len(set(distributions))
    core = next(row for row in rows if row["distribution"] == "saecore")
    assert "synthetic" in core["sources"] and "sae_lens" in core["converters"]


def test_info_aligns_the_values_after_the_longest_field_name(tmp_path: Path) -> None:
    sae = SAE.from_dict({"architecture": "topk", "d_in": 6, "d_sae": 10, "k": 2, "rescale_acts_by_decoder_norm": True,
                         "metadata": {"model_name": "m", "a_rather_long_metadata_field_name": 1}})
    sae.save_model(tmp_path / "sae")
    lines = saecore_cli("info", str(tmp_path / "sae")).stdout.splitlines()
    metadata_at = lines.index("metadata:")
    for block in (lines[:metadata_at], lines[metadata_at + 1:]):
        keys_end = {len(line) - len(line.lstrip()) + len(line.split()[0]) for line in block}
        value_columns = {line.index(line.split(None, 1)[1], max(keys_end)) for line in block}
        assert len(value_columns) == 1, block
        assert value_columns.pop() == max(keys_end) + 2
