"""`saecore train`, run as a user runs it (a subprocess), on the synthetic source."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from saecore import SAE
from saecore.cli import train_cmd
from saecore.errors import ConfigError

SMALL_RUN = ["--training-tokens", "20480", "--d-sae", "128", "--n-eval-batches", "2"]


def saecore_cli(*args: str, cwd: Path | None = None, blocked_plugins: str = "") -> subprocess.CompletedProcess[str]:
    """``saecore ...`` in a subprocess; ``blocked_plugins`` go to SAECORE_BLOCK_PLUGINS (an uninstalled plugin)."""
    env = {**os.environ, "SAECORE_BLOCK_PLUGINS": blocked_plugins} if blocked_plugins else None
    return subprocess.run([sys.executable, "-m", "saecore", *args], capture_output=True, text=True, cwd=cwd, env=env)


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


def _help_text(*args: str, cwd: Path | None = None) -> str:
    result = saecore_cli("train", *args, "--help", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def _shown_default(help_text: str, flag: str) -> str:
    match = re.search(rf"{flag} (?:VALUE|\[true\|false\]) [^()]*(?:\([^()]*\)[^()]*)*?\(default: ([^)]*)\)", help_text)
    assert match is not None, f"{flag} has no default in the help"
    return match.group(1)


def test_help_shows_the_defaults_that_run_and_where_they_come_from(tmp_path: Path) -> None:
    text = _help_text("--arch", "topk")
    assert "(default: None)" not in text and "required" not in text
    assert _shown_default(text, "--d-in") == "from the source: 64"
    assert _shown_default(text, "--d-sae") == "512, 8 × d_in"
    assert _shown_default(text, "--aux-loss-coefficient") == "1.0"
    assert "a new folder under saecore_runs/" in _shown_default(text, "--output-path")
    k, lr, tokens = (_shown_default(text, flag) for flag in ("--k", "--lr", "--training-tokens"))
    assert k.endswith(", synthetic preset") and lr.endswith(", synthetic preset")
    out = tmp_path / "sae"
    result = saecore_cli("train", "--arch", "topk", "--training-tokens", "8192", "--n-eval-batches", "1",
                         "--output-path", str(out))
    assert result.returncode == 0, result.stderr
    runner_cfg = json.loads((out / "runner_cfg.json").read_text())
    assert runner_cfg["sae"]["k"] == int(k.split(",")[0])
    assert runner_cfg["lr"] == float(lr.split(",")[0])
    assert (runner_cfg["sae"]["d_in"], runner_cfg["sae"]["d_sae"]) == (64, 512)
    assert int(tokens.split(",")[0]) == 1_000_000


def test_help_without_presets_shows_the_model_defaults_and_the_source_width() -> None:
    text = _help_text("--arch", "topk", "--source", "tensor")
    assert _shown_default(text, "--lr") == "0.0003"
    assert _shown_default(text, "--k") == "100"
    assert _shown_default(text, "--d-in").startswith("from the source")
    assert "(default: None)" not in text


def test_help_of_several_architectures_gives_each_its_preset() -> None:
    text = _help_text("--arch", "topk", "--arch", "standard")
    assert _shown_default(text, "--l1-coefficient") == "standard: 0.5, synthetic preset"
    assert "one subfolder per architecture" in _shown_default(text, "--output-path")


def test_help_shows_the_settings_of_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("arch: topk\nsae: {k: 16}\nsource_config: {d_in: 32}\nlr: 0.001\nlogger: {run_name: mine}\n")
    text = _help_text("--config", "run.yaml", cwd=tmp_path)
    assert _shown_default(text, "--k") == "16, from run.yaml"
    assert _shown_default(text, "--lr") == "0.001, from run.yaml"
    assert _shown_default(text, "--run-name") == "mine, from run.yaml"
    assert _shown_default(text, "--d-in") == "from the source: 32"
    assert _shown_default(text, "--d-sae") == "256, 8 × d_in"


def test_a_value_flag_without_its_value_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="argument --k: expected one argument"):
        train_cmd.collect_settings(["--arch", "topk", "--k"])
    with pytest.raises(ConfigError, match="argument --lr: expected one argument"):
        train_cmd.collect_settings(["--arch", "topk", "--lr", "--k", "4"])
    _, _, sections, _ = train_cmd.collect_settings(["--arch", "topk", "--verbose", "--k", "4"])
    assert sections["trainer"]["verbose"] == "true" and sections["sae:topk"]["k"] == "4"


@pytest.mark.parametrize(("given", "expected"), [("1e5", 100000), ("2.5E3", 2500), ("1.0e6", 1000000)])
def test_integer_options_take_integral_scientific_notation(given: str, expected: int) -> None:
    _, _, sections, _ = train_cmd.collect_settings(["--arch", "topk", "--training-tokens", given])
    assert sections["trainer"]["training_tokens"] == expected


@pytest.mark.parametrize("given", ["1.5", "1e-3", "inf", "nan"])
def test_integer_options_refuse_fractions_naming_the_flag(given: str) -> None:
    with pytest.raises(ConfigError, match=rf"--training-tokens {given}: expected a whole number"):
        train_cmd.collect_settings(["--arch", "topk", "--training-tokens", given])


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
        (["--arch", "topk", "--sae-placement", "partition"], "only 'topk' is trained; give several --arch"),
        (["--arch", "topk", "--arch", "standard", "--sae-placement", "scatter"], "invalid choice: 'scatter'"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(args: list[str], message: str, tmp_path: Path) -> None:
    # The install hint is what a user without the llm plugin sees, so that plugin is blocked for that case.
    blocked = "source_llm" if "saecore-source-llm" in message else ""
    result = saecore_cli("train", *args, "--output-path", str(tmp_path / "never"), cwd=tmp_path,
                         blocked_plugins=blocked)
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


def test_several_archs_train_together_and_are_saved_apart(tmp_path: Path) -> None:
    pytest.importorskip("saecore_sae_topk")
    out = tmp_path / "sweep"
    result = saecore_cli("train", "--arch", "topk", "--arch", "standard", *SMALL_RUN, "--k", "4", "--l1-coefficient",
                         "0.3", "--output-path", str(out))
    assert result.returncode == 0, result.stderr
    assert "== topk" in result.stdout and "== standard" in result.stdout
    topk, standard = SAE.load_from_disk(out / "topk"), SAE.load_from_disk(out / "standard")
    assert (topk.cfg.architecture(), topk.cfg.k, topk.cfg.d_sae) == ("topk", 4, 128)  # type: ignore[attr-defined]
    assert standard.cfg.architecture() == "standard" and standard.cfg.d_sae == 128
    runner_cfg = json.loads((out / "standard" / "runner_cfg.json").read_text())
    assert runner_cfg["sae"]["l1_coefficient"] == 0.3 and runner_cfg["training_tokens"] == 20480
    assert runner_cfg["tune_malloc"] is True
    twice = saecore_cli("train", "--arch", "topk", "--arch", "topk")
    assert twice.returncode != 0 and "use a sweep file" in twice.stderr


def test_a_sweep_file_trains_each_entry(tmp_path: Path) -> None:
    pytest.importorskip("saecore_sae_topk")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "training_tokens: 8192\n"
        "n_eval_batches: 1\n"
        "verbose: false\n"
        f"output_path: {tmp_path / 'runs'}\n"
        f"checkpoint_path: {tmp_path / 'checkpoints'}\n"
        "source: {name: synthetic, d_in: 16, n_features: 32}\n"
        "sae: {architecture: topk, d_in: 16, d_sae: 64, k: 4}\n"
        "sweep:\n"
        "  - {name: k4}\n"
        "  - {name: k8, sae: {k: 8}}\n"
    )
    result = saecore_cli("train", "--sweep", str(sweep))
    assert result.returncode == 0, result.stderr
    assert [SAE.load_from_disk(tmp_path / "runs" / name).cfg.k for name in ("k4", "k8")] == [4, 8]  # type: ignore[attr-defined]
    assert json.loads((tmp_path / "runs" / "k4" / "runner_cfg.json").read_text())["tune_malloc"] is True
    extra = saecore_cli("train", "--sweep", str(sweep), "--lr", "0.1")
    assert extra.returncode != 0 and "takes all settings from the file" in extra.stderr


def test_output_path_null_trains_without_saving(tmp_path: Path) -> None:
    result = saecore_cli("train", "--arch", "standard", *SMALL_RUN, "--output-path", "null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not saved (output_path=None)" in result.stdout
    assert not list((tmp_path / "saecore_runs").glob("*/cfg.json"))


def test_the_command_tunes_malloc_unless_told_not_to(tmp_path: Path) -> None:
    """The Python API leaves the process-wide malloc tuning off; the command, owning its process, turns it on."""
    for flags, expected in (([], True), (["--tune-malloc", "false"], False)):
        out = tmp_path / str(expected)
        result = saecore_cli("train", "--arch", "standard", *SMALL_RUN, *flags, "--output-path", str(out))
        assert result.returncode == 0, result.stderr
        assert json.loads((out / "runner_cfg.json").read_text())["tune_malloc"] is expected
