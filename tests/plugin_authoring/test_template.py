"""A template-generated plugin, pip-installed into a fresh venv, is listed, trains, and passes its own tests.

This is the path a plugin author walks: ``saecore new-plugin`` → ``pip install`` →
``saecore plugins`` → ``saecore train`` → ``pytest``. The venv sees the running
environment's packages (torch, saecore, saecore-sae-standard) through the core tests'
``.pth`` bridge; the generated packages are real wheels installed into it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fixtures.plugin_venv import build_plugin_venv

from .template_helpers import generate

pytestmark = pytest.mark.slow_install

ARCH, SOURCE = "tmpl_relu", "tmpl_mlp"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generated")
    return {"architecture": generate(ARCH, "architecture", root), "source": generate(SOURCE, "source", root)}


@pytest.fixture(scope="module")
def venv_python(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_plugin_venv(tmp_path_factory.mktemp("template-venv"), list(packages.values()))


def run(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAECORE_")}
    env.update({"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"})
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def test_installed_plugins_are_listed(venv_python: Path) -> None:
    result = run(venv_python, "-m", "saecore", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    listing: dict[str, Any] = json.loads(result.stdout)
    rows = {row["distribution"]: row for row in listing["plugins"]}
    arch_row, source_row = rows["saecore-sae-tmpl-relu"], rows["saecore-source-tmpl-mlp"]
    assert (arch_row["plugin"], arch_row["version"], arch_row["status"]) == ("sae_tmpl_relu", "0.1.0", "ok")
    assert arch_row["architectures"] == [ARCH] and arch_row["training_recipes"] == [ARCH]
    assert (source_row["plugin"], source_row["sources"]) == ("source_tmpl_mlp", [SOURCE])
    located = run(venv_python, "-c", "import saecore_sae_tmpl_relu, sys; print(saecore_sae_tmpl_relu.__file__)")
    assert Path(located.stdout.strip()).resolve().is_relative_to(venv_python.parent.parent.resolve())


@pytest.mark.parametrize(("flags", "architecture"), [(["--arch", ARCH], ARCH),
                                                      (["--arch", "standard", "--source", SOURCE], "standard")])
def test_trains_with_the_generated_plugin(
    venv_python: Path, tmp_path: Path, flags: list[str], architecture: str
) -> None:
    output = tmp_path / "sae"
    result = run(venv_python, "-m", "saecore", "train", *flags, "--training-tokens", "20000",
                 "--output-path", str(output), "--verbose", "false")
    assert result.returncode == 0, result.stderr
    assert "saved to" in result.stdout
    cfg = json.loads((output / "cfg.json").read_text())
    assert cfg["architecture"] == architecture


def test_generated_recipe_brings_its_own_synthetic_presets(venv_python: Path) -> None:
    """The template's recipe declares presets; the installed core applies them with no edit of its own."""
    script = (
        "import json; from saecore.cli.train_presets import apply_presets; trainer = {}; "
        f"sae = apply_presets({ARCH!r}, 'synthetic', 16, {{}}, trainer); print(json.dumps([sae, trainer]))"
    )
    result = run(venv_python, "-c", script)
    assert result.returncode == 0, result.stderr
    sae, trainer = json.loads(result.stdout)
    assert sae == {"d_in": 16, "d_sae": 128, "l1_coefficient": 0.5}
    assert trainer == {"lr": 1e-2, "training_tokens": 1_000_000, "tune_malloc": True}


def test_generated_recipe_takes_the_fast_sparse_route(venv_python: Path, packages: dict[str, Path]) -> None:
    """Its step runs through saecore.sparse once the activations are sparse, checked against its dense step."""
    result = run(venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fast_route.py",
                 cwd=packages["architecture"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("2 passed"), result.stdout


@pytest.mark.parametrize("kind", ["architecture", "source"])
def test_generated_package_passes_its_own_tests(venv_python: Path, packages: dict[str, Path], kind: str) -> None:
    result = run(venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=packages[kind])
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary and "skipped" not in summary, summary
