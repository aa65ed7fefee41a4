"""``saecore new-plugin``: names, files, and refusing what it cannot do (no install; see test_template)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from saecore import ConfigError
from saecore.plugin_template import plugin_names
from saecore.version import __version__

from .template_helpers import generate, new_plugin

ARCHITECTURE_FILES = [
    "README.md", "pyproject.toml", "src/saecore_sae_my_relu/__init__.py", "src/saecore_sae_my_relu/plugin.py",
    "src/saecore_sae_my_relu/py.typed", "src/saecore_sae_my_relu/sae.py", "tests/test_conformance.py",
    "tests/test_fast_route.py", "tests/test_math.py",
]
SOURCE_FILES = [
    "README.md", "pyproject.toml", "src/saecore_source_my_model/__init__.py", "src/saecore_source_my_model/plugin.py",
    "src/saecore_source_my_model/py.typed", "src/saecore_source_my_model/source.py", "tests/test_conformance.py",
    "tests/test_source.py",
]
RUFF_RULES = ["--select", "E,F,W,I,B,UP,RUF", "--ignore", "RUF001,RUF002,RUF003", "--line-length", "120",
              "--target-version", "py310"]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(("name", "kind", "expected"), [("my_relu", "architecture", ARCHITECTURE_FILES),
                                                         ("my-model", "source", SOURCE_FILES)])
def test_generates_a_complete_package(tmp_path: Path, name: str, kind: str, expected: list[str]) -> None:
    folder = generate(name, kind, tmp_path)
    assert files_under(folder) == expected
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "$" not in text, f"{path} still holds a template placeholder"
            if path.suffix == ".py":
                compile(text, str(path), "exec")


def test_pyproject_declares_the_entry_point_and_a_compatible_core(tmp_path: Path) -> None:
    tomllib = pytest.importorskip("tomllib")
    folder = generate("my_relu", "architecture", tmp_path)
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == "saecore-sae-my-relu"
    assert project["entry-points"]["saecore"] == {"sae_my_relu": "saecore_sae_my_relu.plugin"}
    major, minor = __version__.split(".")[:2]
    assert project["dependencies"] == [f"saecore>={major}.{minor},<{major}.{int(minor) + 1}"]


def test_generated_code_is_lint_clean(tmp_path: Path) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    for name, kind in (("my_relu", "architecture"), ("my_model", "source")):
        folder = generate(name, kind, tmp_path)
        result = subprocess.run([ruff, "check", "--isolated", *RUFF_RULES, "."], cwd=folder,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_prints_the_next_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert new_plugin("my_relu", "--kind", "architecture", "--output", str(tmp_path)) == 0
    printed = capsys.readouterr().out
    folder = tmp_path / "saecore-sae-my-relu"
    assert f"created {folder} (architecture 'my_relu', distribution saecore-sae-my-relu" in printed
    assert f"pip install -e {folder}" in printed and "saecore train --arch my_relu" in printed


@pytest.mark.parametrize("name", ["My Relu", "1relu", "relu!", ""])
def test_bad_names_are_refused_with_what_is_allowed(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"NAME {name!r}: not a usable plugin name; allowed: lowercase letters"):
        plugin_names(name, "architecture")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="--kind 'converter': unknown plugin kind; allowed: architecture, source"):
        plugin_names("x", "converter")


def test_names_follow_the_first_party_convention() -> None:
    names = plugin_names("my-model", "source")
    assert (names.name, names.distribution, names.module, names.entry_point, names.class_prefix) == (
        "my_model", "saecore-source-my-model", "saecore_source_my_model", "source_my_model", "MyModel")


def test_never_overwrites_an_existing_package(tmp_path: Path) -> None:
    folder = generate("my_relu", "architecture", tmp_path)
    (folder / "README.md").write_text("my notes")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        new_plugin("my_relu", "--kind", "architecture", "--output", str(tmp_path))
    assert (folder / "README.md").read_text() == "my notes"
