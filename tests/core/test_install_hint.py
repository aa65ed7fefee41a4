"""The install hint in "not installed" errors works from a source checkout, where plugins are not on PyPI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import saecore
from saecore.known_plugins import local_plugin_folder

CHECKOUT = Path(__file__).resolve().parents[2]


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


@pytest.mark.skipif(not (CHECKOUT / "plugins" / "sae_standard").is_dir(), reason="needs the source checkout")
def test_errors_from_this_checkout_name_the_plugin_folder() -> None:
    """This environment installs the core from the checkout: the hint gives the absolute plugin folder."""
    assert Path(saecore.__file__).resolve().is_relative_to(CHECKOUT)
    env = {**os.environ, "SAECORE_BLOCK_PLUGINS": "sae_standard"}
    result = subprocess.run([sys.executable, "-m", "saecore", "train", "--arch", "standard"], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 1
    assert (f"training recipe 'standard' is not installed: pip install saecore-sae-standard "
            f"(from a source checkout: pip install {CHECKOUT / 'plugins' / 'sae_standard'})") in result.stderr
    importing = subprocess.run([sys.executable, "-c", "from saecore import StandardSAE"], capture_output=True,
                               text=True, env=env)
    assert f"pip install {CHECKOUT / 'plugins' / 'sae_standard'}" in importing.stderr
