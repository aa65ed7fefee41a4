"""saecore.testing.pytest_plugin, loaded by pytest the way users load it, in a fresh pytest process.

Until the pytest11 entry point is installed the plugin is loaded with ``-p``; once it is,
``-p`` with the same module name is a no-op, so the same command works either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN = "saecore.testing.pytest_plugin"

USER_TESTS = '''
import os

import torch
from torch import nn

from saecore import SAE, SAEConfig, get_registry, hookimpl


class PPReluConfig(SAEConfig):
    ARCHITECTURE = "pp_relu"


class PPRelu(SAE[PPReluConfig]):
    def initialize_weights(self):
        super().initialize_weights()
        self.b_enc = nn.Parameter(self._zeros(self.cfg.d_sae))

    def encode(self, x):
        hidden_pre = self.hook_sae_acts_pre(self.process_sae_in(x) @ self.W_enc + self.b_enc)
        return self.hook_sae_acts_post(torch.relu(hidden_pre))

    def decode(self, f):
        return self.finish_decode(f @ self.W_dec + self.b_dec)


class Plugin:
    @hookimpl
    def saecore_register_architectures(self, register):
        register("pp_relu", PPRelu, PPReluConfig)


def test_1_register_adds_an_in_process_plugin(saecore_register):
    saecore_register(Plugin(), "pp_plugin")
    assert get_registry().architecture("pp_relu").provider.describe() == "in-process plugin 'pp_plugin'"
    assert SAE.from_dict({"architecture": "pp_relu", "d_in": 4, "d_sae": 8}).encode(torch.ones(4)).shape == (8,)


def test_2_the_plugin_is_forgotten_after_its_test():
    assert "pp_relu" not in get_registry().architectures


def test_3_only_plugins_restricts_discovery(saecore_only_plugins):
    saecore_only_plugins("sae_standard")
    third_party = {name for name, info in get_registry().plugins.items() if info.distribution != "saecore"}
    assert third_party == {"sae_standard"}
    assert "synthetic" in get_registry().sources


def test_4_discovery_is_unrestricted_again():
    assert os.environ.get("SAECORE_PLUGINS") is None


def test_5_registry_fixture_is_the_current_registry(saecore_registry):
    assert saecore_registry is get_registry()
    assert "standard" in saecore_registry.architectures


def test_6_strict_option_sets_strict_discovery():
    assert os.environ.get("SAECORE_STRICT_PLUGINS", "unset") == os.environ["EXPECTED_STRICT"]
'''


def run_pytest(folder: Path, *options: str, expected_strict: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SAECORE_")}
    env["EXPECTED_STRICT"] = expected_strict
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider", "-q", *options, "test_user.py"],
        cwd=folder, capture_output=True, text=True, env=env, timeout=300,
    )


def test_fixtures_and_the_strict_option_work_in_a_users_test_run(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(USER_TESTS)
    plain = run_pytest(tmp_path, expected_strict="unset")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "6 passed" in plain.stdout
    strict = run_pytest(tmp_path, "--saecore-strict-plugins", expected_strict="1")
    assert strict.returncode == 0, strict.stdout + strict.stderr
    assert "6 passed" in strict.stdout

