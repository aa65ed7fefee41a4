"""SAECORE_PLUGINS / SAECORE_BLOCK_PLUGINS against the installed standard plugin, in this process."""

from __future__ import annotations

import pytest

from saecore.plugin_manager import ENV_BLOCK, ENV_ONLY, load_entry_point_plugins


@pytest.mark.parametrize("name", ["sae_standard", "saecore-sae-standard"])
def test_only_switch_accepts_entry_point_and_distribution_names(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(ENV_ONLY, f" {name} , ")
    plugins = load_entry_point_plugins().plugins
    assert [n for n, info in plugins.items() if info.distribution != "saecore"] == ["sae_standard"]


@pytest.mark.parametrize("name", ["sae_standard", "saecore-sae-standard"])
def test_block_switch_accepts_entry_point_and_distribution_names(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.delenv(ENV_ONLY)
    monkeypatch.setenv(ENV_BLOCK, name)
    loaded = load_entry_point_plugins()
    assert "sae_standard" not in loaded.plugins
    assert loaded.failures == []


@pytest.mark.parametrize("name", ["saecore_sae_standard", "SAEcore-SAE-Standard"])
def test_switches_match_distribution_names_the_way_pip_does(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(ENV_ONLY, name)
    plugins = load_entry_point_plugins().plugins
    assert [n for n, info in plugins.items() if info.distribution != "saecore"] == ["sae_standard"]
