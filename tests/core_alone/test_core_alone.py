"""Run in an environment holding the core and no plugin (nox session ``core_alone``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import saecore
from saecore import SAE, UnknownNameError


def test_no_architecture_is_installed() -> None:
    assert saecore.get_registry().architectures == {}


def test_core_does_not_import_llm_libraries() -> None:
    code = ("import sys, saecore, saecore.training, saecore.cli.main; saecore.get_registry(); "
            "bad = [m for m in ('transformer_lens', 'datasets', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_asking_for_topk_names_the_package() -> None:
    with pytest.raises(UnknownNameError, match="architecture 'topk' is not installed: pip install saecore-sae-topk"):
        SAE.from_dict({"architecture": "topk", "d_in": 4, "d_sae": 8, "k": 2})


def test_importing_a_plugin_class_names_the_package() -> None:
    with pytest.raises(ImportError, match="pip install saecore-sae-topk"):
        from saecore import TopKSAE  # noqa: F401


def test_cli_plugins_says_no_architecture_is_installed() -> None:
    result = subprocess.run([sys.executable, "-m", "saecore", "plugins"], capture_output=True, text=True, check=True)
    assert "No SAE architecture is installed" in result.stdout


def test_cli_train_names_the_package_without_traceback() -> None:
    result = subprocess.run([sys.executable, "-m", "saecore", "train", "--arch", "topk"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "pip install saecore-sae-topk" in result.stderr
    assert "Traceback" not in result.stderr
