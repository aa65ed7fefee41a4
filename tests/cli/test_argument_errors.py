"""Bad command lines and settings files: one error line naming the flag, file or key, and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from saecore.cli.main import main

pytest.importorskip("saecore_sae_topk")


def error_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("saecore: error: ")
    return first.removeprefix("saecore: error: ")


def settings_file(tmp_path: Path, text: str, name: str = "run.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_abbreviated_flag_is_not_taken_for_a_longer_one(capsys: pytest.CaptureFixture[str]) -> None:
    message = error_line(capsys, "train", "--arch", "topk", "--lr-w", "5")
    assert message.startswith("unknown option(s): --lr-w")


def test_abbreviated_flag_of_a_plain_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["plugins", "--js"])
    assert "unrecognized arguments: --js" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "expected"), [("--d-sae", "a whole number"), ("--lr", "a number")])
def test_empty_flag_value_names_the_flag_and_type(capsys: pytest.CaptureFixture[str], flag: str, expected: str) -> None:
    assert error_line(capsys, "train", "--arch", "topk", flag, "") == f"{flag} got an empty value; expected {expected}"


def test_flag_value_that_is_not_json_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    message = error_line(capsys, "train", "--arch", "topk", "--d-sae", "[1")
    assert message.startswith("--d-sae '[1': a value starting with '[' is read as a JSON list or mapping")


@pytest.mark.parametrize("stray", [".", ""])
def test_stray_positional_argument_is_named(capsys: pytest.CaptureFixture[str], stray: str) -> None:
    message = error_line(capsys, "train", "--arch", "topk", stray)
    assert message.startswith(f"unexpected argument(s) {stray!r}: saecore train takes no such positional argument")


def test_missing_sweep_file_names_the_sweep_flag(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert error_line(capsys, "train", "--sweep", str(missing)) == f"--sweep {missing}: no such file"


def test_misspelled_section_in_the_config_file_names_the_close_match(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = settings_file(tmp_path, "archh: topk\n")
    message = error_line(capsys, "train", "--config", path)
    assert message == f"--config {path}: unknown key 'archh' (did you mean 'arch'?)"


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [("run.yaml", "arch: topk\nsae: {k: 4}\nsae: {k: 8}\n", "line 3, column 1: "),
     ("run.json", '{"arch": "topk", "sae": {"k": 4}, "sae": {"k": 8}}', "")],
)
def test_key_given_twice_in_the_config_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = settings_file(tmp_path, text, name)
    message = error_line(capsys, "train", "--config", path)
    assert message.startswith(f"--config {path}: cannot parse ({where}key 'sae' is given twice")


def test_unparsable_yaml_is_one_line_with_its_position(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = settings_file(tmp_path, "arch: topk\nsae: {k: 4\n")
    assert main(["train", "--config", path]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"saecore: error: --config {path}: cannot parse (line 3, column 1: expected ',' " \
                                  "or '}', but got '<stream end>')"


@pytest.mark.parametrize("seed", [str(2**70), "-1"])
def test_seed_is_validated_before_the_source_uses_it(capsys: pytest.CaptureFixture[str], seed: str) -> None:
    message = error_line(capsys, "train", "--arch", "topk", "--seed", seed)
    assert message.startswith(f"trainer options: field 'seed' = '{seed}'")


def test_unknown_architecture_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert error_line(capsys, "train", "--arch", "nope").startswith("--arch nope: unknown training recipe 'nope'")


@pytest.mark.parametrize(
    ("value", "expected"), [(str(2**70), "less than or equal to 1048576"), ("true", "valid integer")]
)
def test_synthetic_source_sizes_are_bounded_whole_numbers(
    capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    message = error_line(capsys, "train", "--arch", "topk", "--n-features", value)
    assert message.startswith(f"source 'synthetic': field 'n_features' = '{value}'") and expected in message
