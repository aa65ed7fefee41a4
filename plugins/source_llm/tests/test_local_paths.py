"""Local model and data paths are recorded absolute: a saved SAE evaluates from any working directory."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from saecore_source_llm import LLMSourceConfig

from saecore.cli import eval_cmd, train_cmd


def test_local_paths_become_absolute_and_hub_names_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.jsonl").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    cfg = LLMSourceConfig(model_name="models/tiny", dataset_path="data/a.jsonl")
    assert (cfg.model_name, cfg.dataset_path) == (str(tmp_path / "models" / "tiny"), str(tmp_path / "data" / "a.jsonl"))
    assert LLMSourceConfig(dataset_path="./data").dataset_path == str(tmp_path / "data")
    assert LLMSourceConfig(dataset_path="data/*.jsonl").dataset_path == str(tmp_path / "data" / "*.jsonl")
    hub = LLMSourceConfig(model_name="gpt2", dataset_path="NeelNanda/pile-10k")
    assert (hub.model_name, hub.dataset_path) == ("gpt2", "NeelNanda/pile-10k")
    assert LLMSourceConfig(dataset_path="").dataset_path == ""


def test_an_sae_trained_with_relative_paths_evaluates_from_elsewhere(
    model_dir: Path, text_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "train_here").mkdir()
    (tmp_path / "eval_here").mkdir()
    monkeypatch.chdir(tmp_path / "train_here")
    train = ["--arch", "topk", "--source", "llm", "--model", os.path.relpath(model_dir), "--hook-name",
             "blocks.1.hook_resid_post", "--dataset-path", os.path.relpath(text_dir), "--context-size", "16",
             "--store-batch-size-prompts", "4", "--n-batches-in-buffer", "4", "--training-tokens", "640",
             "--train-batch-size-tokens", "64", "--d-sae", "64", "--k", "4", "--n-eval-batches", "1",
             "--verbose", "false", "--output-path", "sae"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert train_cmd.run_from_argv(train) == 0
        metadata = json.loads((tmp_path / "train_here" / "sae" / "cfg.json").read_text())["metadata"]
        assert (metadata["model_name"], metadata["dataset_path"]) == (os.path.abspath(model_dir),
                                                                      os.path.abspath(text_dir))
        monkeypatch.chdir(tmp_path / "eval_here")
        capsys.readouterr()
        argv = [str(tmp_path / "train_here" / "sae"), "--source", "llm", "--n-eval-batches", "1",
                "--batch-size-tokens", "64", "--store-batch-size-prompts", "4", "--n-batches-in-buffer", "4",
                "--verbose", "false", "--json"]
        assert eval_cmd.run_from_argv(argv) == 0
    assert json.loads(capsys.readouterr().out)["source_config"]["model_name"] == os.path.abspath(model_dir)
