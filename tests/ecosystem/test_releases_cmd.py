"""``saecore releases [PATTERN]``: parsed and run as the saecore command does."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.in_process import ReleasePlugin

from saecore.cli import releases_cmd
from saecore.converters.release_directory import load_release_index
from saecore.registry import get_registry

AddPlugin = Callable[[Any, str], None]


def run_releases(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="saecore")
    commands = parser.add_subparsers(dest="command", required=True)
    releases_cmd.add_parser(commands, "releases")
    return releases_cmd.run(parser.parse_args(["releases", *argv]))


def test_table_lists_release_repo_model_count_and_conversion(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_releases() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["release", "repo", "model", "#saes", "conversion", "loadable"]
    rows = {line.split()[0]: line.split() for line in lines[2:] if line and not line.startswith(" ")}
    assert rows["gpt2-small-res-jb"] == ["gpt2-small-res-jb", "jbloom/GPT2-Small-SAEs-Reformatted", "gpt2-small",
                                         "13", "sae_lens", "yes"]
    assert rows["sae-llama-3-8b-32x"][-3:] == ["32", "sparsify", "yes"]
    assert set(load_release_index()) <= set(rows)
    assert lines[-1].startswith(f"{len(load_release_index())} release(s).")


def test_pattern_filters_by_substring(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_releases("mistral") == 0
    out = capsys.readouterr().out
    assert "mistral-7b-res-wg" in out and "gpt2-small-res-jb" not in out


def test_saes_flag_lists_ids_with_their_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_releases("gpt2-small-res-jb-feature-splitting", "--saes") == 0
    out = capsys.readouterr().out
    assert "gpt2-small-res-jb-feature-splitting (jbloom/GPT2-Small-Feature-Splitting-Experiment-Layer-8)" in out
    header = next(line for line in out.splitlines() if line.startswith("sae_id"))
    assert header.split() == ["sae_id", "path", "L0", "var.", "explained", "neuronpedia"]


def test_json_output_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_releases("gemma-scope-2b-pt-res-canonical", "--json", "--saes") == 0
    records = json.loads(capsys.readouterr().out)
    assert [record["release"] for record in records] == ["gemma-scope-2b-pt-res-canonical"]
    record = records[0]
    assert (record["repo_id"], record["model"], record["conversion"]) == (
        "google/gemma-scope-2b-pt-res", "gemma-2-2b", "gemma_scope")
    assert record["n_saes"] == len(record["saes"]) == 58
    assert record["saes"]["layer_3/width_16k/canonical"]["path"] == "layer_3/width_16k/average_l0_59"
    assert record["provider"] == "saecore"


def test_plugin_releases_are_listed_with_their_provider(capsys: pytest.CaptureFixture[str],
                                                        add_plugin: AddPlugin) -> None:
    add_plugin(ReleasePlugin("my-lab-gpt2-res", "my-lab/gpt2-saes", {"a": {"path": "a"}}, model="gpt2"), "my_lab")
    assert run_releases("my-lab", "--json") == 0
    assert json.loads(capsys.readouterr().out) == [{
        "release": "my-lab-gpt2-res", "repo_id": "my-lab/gpt2-saes", "model": "gpt2", "n_saes": 1,
        "conversion": "sae_lens", "provider": "my_lab", "loadable": True, "missing": []}]


def test_no_match_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_releases("no-such-release-anywhere") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No release matches 'no-such-release-anywhere'" in captured.err


def test_counts_per_format_and_which_releases_load(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_releases("gemma-scope-*") == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("format "))
    assert lines[header].split() == ["format", "releases", "#saes", "loadable", "releases"]
    formats = {line.split()[0]: line.split()[1:] for line in lines[header + 2:] if line.strip()}
    assert formats["gemma_scope"] == ["16", "2833", "16"]
    assert formats["gemma_3"][:2] == ["75", "8784"]


def test_a_release_whose_format_no_plugin_reads_is_marked_and_explained(
        capsys: pytest.CaptureFixture[str], add_plugin: AddPlugin) -> None:
    add_plugin(ReleasePlugin("my-lab-clt", "my-lab/clt", {"a": {"path": "a"}}, model="gemma-2-2b",
                             conversion="mntss_clt_layer_transcoder", architectures=["no_such_architecture"]),
               "my_lab")
    # With saecore-transcoders installed the format is read, and only the architecture is missing.
    transcoders_installed = "mntss_clt_layer_transcoder" in get_registry().converters
    assert run_releases("my-lab") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2].split()[-2:] == ["mntss_clt_layer_transcoder", "no"]
    if not transcoders_installed:
        assert ("the 'mntss_clt_layer_transcoder' format needs transcoder support, "
                "a saecore-transcoders plugin package") in out
    assert ("architecture 'no_such_architecture' is not installed (no installed plugin provides it)\n"
            "    my-lab-clt") in out
    assert run_releases("my-lab", "--json") == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["loadable"] is False and len(record["missing"]) == (1 if transcoders_installed else 2)


def test_an_unknown_release_gets_close_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_releases("gpt2-smal-res-jb") == 0
    assert "No release matches 'gpt2-smal-res-jb'. Did you mean: gpt2-small-res-jb" in capsys.readouterr().err
