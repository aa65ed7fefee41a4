"""The install hint in "not installed" errors works from a source checkout, where plugins are not on PyPI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import pytest

from saecore.known_plugins import local_plugin_folder


def test_an_index_install_gets_the_package_name_alone() -> None:
    assert local_plugin_folder("saecore-sae-standard", None) is None
    assert local_plugin_folder("saecore-sae-standard", {"url": "https://files.example/saecore-0.1.0.whl",
                                                        "archive_info": {}}) is None


def test_a_checkout_install_gets_the_plugin_folder_in_it(tmp_path: Path) -> None:
    (tmp_path / "plugins" / "sae_matryoshka_batchtopk").mkdir(parents=True)
    record = {"url": tmp_path.as_uri(), "dir_info": {"editable": True}}
    assert local_plugin_folder("saecore-sae-matryoshka-batchtopk", record) == str(
        tmp_path / "plugins" / "sae_matryoshka_batchtopk")
    assert local_plugin_folder("saecore-source-llm", record) == "./plugins/source_llm"


def test_a_local_wheel_install_gets_the_folder_relative_to_a_checkout(tmp_path: Path) -> None:
    record = {"url": (tmp_path / "saecore-0.1.0-py3-none-any.whl").as_uri(), "archive_info": {}}
    assert local_plugin_folder("saecore-sae-topk", record) == "./plugins/sae_topk"


def test_errors_name_the_plugin_folder_of_the_checkout_the_core_came_from() -> None:
    """Tests run on a core installed from this checkout (editable here, ``pip install .`` under nox)."""
    record = json.loads(distribution("saecore").read_text("direct_url.json") or "null")
    if not (isinstance(record, dict) and "dir_info" in record):
        pytest.skip("the core was not installed from a folder")
    env = {**os.environ, "SAECORE_BLOCK_PLUGINS": "sae_standard"}
    result = subprocess.run([sys.executable, "-m", "saecore", "train", "--arch", "standard"], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 1
    hint = re.search(r"training recipe 'standard' is not installed: pip install saecore-sae-standard "
                     r"\(from a source checkout: pip install (\S+)\)", result.stderr)
    assert hint is not None, result.stderr
    assert (Path(hint.group(1)) / "pyproject.toml").is_file()
    assert Path(hint.group(1)).name == "sae_standard"
    importing = subprocess.run([sys.executable, "-c", "from saecore import StandardSAE"], capture_output=True,
                               text=True, env=env)
    assert f"pip install {hint.group(1)}" in importing.stderr
