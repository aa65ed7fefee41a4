"""``saecore --version`` answers without importing torch (it used to take seconds)."""

from __future__ import annotations

import subprocess
import sys

from saecore.version import __version__


def test_version_imports_neither_torch_nor_a_command() -> None:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "saecore", "--version"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"saecore {__version__}\n"
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "saecore.cli.train_cmd" not in imported
    assert "saecore" in imported


def test_core_names_still_resolve_after_a_torch_free_import() -> None:
    code = ("import sys, saecore; assert 'torch' not in sys.modules; "
            "from saecore import SAE, TrainerConfig, HookPoint; "
            "print(SAE.__module__, TrainerConfig.__name__, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["saecore.sae", "TrainerConfig", "True"]
