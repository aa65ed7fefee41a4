"""`saecore train`, run as a user runs it (a subprocess), on the synthetic source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from saecore import SAE

SMALL_RUN = ["--training-tokens", "20480", "--d-sae", "128", "--n-eval-batches", "2"]


def saecore_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saecore", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("arch", ["standard", "gated", "jumprelu", "topk"])
def test_train_prints_the_summary_and_saves_a_loadable_sae(arch: str, tmp_path: Path) -> None:
    pytest.importorskip(f"saecore_sae_{arch}")
    out = tmp_path / "sae"
    result = saecore_cli("train", "--arch", arch, *SMALL_RUN, "--output-path", str(out))
    assert result.returncode == 0, result.stderr
    for label in ("L0", "explained variance", "dead features", "true features found", "saved to"):
        assert label in result.stdout
    sae = SAE.load_from_disk(out)
    assert sae.cfg.architecture() == arch
    assert (sae.cfg.d_in, sae.cfg.d_sae) == (64, 128)
    assert sae.cfg.metadata.dataset_path == "synthetic"
    assert (out / "sparsity.safetensors").is_file()


def test_help_lists_the_options_of_the_chosen_architecture() -> None:
    topk = saecore_cli("train", "--arch", "topk", "--help")
    assert topk.returncode == 0
    assert "--k " in topk.stdout and "--aux-loss-coefficient" in topk.stdout
    assert "--lr " in topk.stdout and "--log-to-wandb" in topk.stdout and "--n-features" in topk.stdout
    standard = saecore_cli("train", "--arch", "standard", "--help")
    assert "--l1-coefficient" in standard.stdout and "--aux-loss-coefficient" not in standard.stdout
    bare = saecore_cli("train", "--help")
    assert "installed training recipes:" in bare.stdout and "topk" in bare.stdout


def test_config_file_is_read_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "arch: topk\n"
        "sae: {k: 4, d_sae: 96}\n"
        "source_config: {n_features: 64}\n"
        "training_tokens: 20480\n"
        "n_eval_batches: 1\n"
        f"output_path: {tmp_path / 'from_file'}\n"
    )
    result = saecore_cli("train", "--config", str(config), "--k", "6", "--output-path", str(tmp_path / "flag"))
    assert result.returncode == 0, result.stderr
    cfg = json.loads((tmp_path / "flag" / "cfg.json").read_text())
    assert cfg["k"] == 6 and cfg["d_sae"] == 96
    assert not (tmp_path / "from_file").exists()


def test_json_config_and_python_dash_m_are_equivalent(tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"arch": "standard", "training_tokens": 8192, "n_eval_batches": 1,
                                  "sae": {"d_sae": 64}, "output_path": str(tmp_path / "out")}))
    console_script = Path(sys.executable).parent / "saecore"
    result = subprocess.run([str(console_script), "train", "--config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert SAE.load_from_disk(tmp_path / "out").cfg.d_sae == 64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "topk", "--k", "5000"], "k"),
        (["--arch", "standard", "--l1-coefficient", "-1"], "l1_coefficient"),
        (["--arch", "topk", "--learning-rate", "0.1"], "unknown option(s): --learning-rate"),
        (["--arch", "topk", "--dtype", "float13"], "dtype"),
        (["--arch", "nosuch"], "unknown training recipe 'nosuch'"),
        (["--arch", "topk", "--source", "llm"], "pip install saecore-source-llm"),
        (["--arch", "topk", "--training-tokens", "100", "--train-batch-size-tokens", "4096"], "training_tokens"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(args: list[str], message: str, tmp_path: Path) -> None:
    result = saecore_cli("train", *args, "--output-path", str(tmp_path / "never"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    first_line = result.stderr.splitlines()[0]
    assert message in first_line, first_line


def test_unknown_key_in_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("arch: topk\nlearning_rate: 0.1\n")
    result = saecore_cli("train", "--config", str(config))
    assert result.returncode == 1
    assert "unknown setting 'learning_rate'" in result.stderr
