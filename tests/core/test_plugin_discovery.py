"""Discovery of plugin packages that are really installed (pip, wheel, entry point in dist-info).

One virtualenv gets all four fixture packages. One fresh interpreter in it then runs every
scenario below, each discovering the entry points again with its own SAECORE_PLUGINS /
SAECORE_BLOCK_PLUGINS / SAECORE_STRICT_PLUGINS settings, which tests those switches too.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from fixtures.plugin_venv import build_plugin_venv, fixture_package, run_probe

pytestmark = pytest.mark.slow_install

FIXTURES = ("saecore_fixture_good", "saecore_fixture_broken", "saecore_fixture_misspelled", "saecore_fixture_duplicate")
SCENARIOS: dict[str, dict[str, Any]] = {
    "all_but_duplicate": {"env": {"SAECORE_BLOCK_PLUGINS": "saecore-fixture-duplicate"}, "exercise": "fixture_relu"},
    "strict": {"env": {"SAECORE_STRICT_PLUGINS": "1", "SAECORE_PLUGINS": "fixture_broken,fixture_good"}},
    "duplicate": {"env": {"SAECORE_PLUGINS": "saecore-fixture-duplicate,saecore-sae-standard"}},
    "only_good": {"env": {"SAECORE_PLUGINS": "fixture_good"}},
    "block_bad": {"env": {"SAECORE_BLOCK_PLUGINS": "fixture_broken,fixture_misspelled,saecore-fixture-duplicate"}},
}


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plugin-venv")
    return build_plugin_venv(root, [fixture_package(name) for name in FIXTURES])


@pytest.fixture(scope="module")
def reports(venv_python: Path) -> dict[str, dict[str, Any]]:
    return run_probe(venv_python, SCENARIOS)


def test_architecture_is_unknown_where_its_package_is_not_installed() -> None:
    report = run_probe(Path(sys.executable), {"plain": {"env": {"SAECORE_PLUGINS": "fixture_good,sae_standard"}}})
    assert report["plain"]["error"] is None
    assert "fixture_relu" not in report["plain"]["architectures"]
    assert report["plain"]["plugins"] == ["sae_standard"]


def test_installed_third_party_architecture_is_discovered_and_works(
    venv_python: Path, reports: dict[str, dict[str, Any]]
) -> None:
    report = reports["all_but_duplicate"]
    assert report["error"] is None, report["error"]
    assert report["architectures"]["fixture_relu"] == "saecore-fixture-good"
    assert report["architectures"]["standard"] == "saecore-sae-standard"
    used = report["exercise"]
    assert (used["class"], used["loaded_class"]) == ("FixtureReluSAE", "FixtureReluSAE")
    venv_root = venv_python.parent.parent.resolve()
    assert Path(used["module_file"]).resolve().is_relative_to(venv_root), used["module_file"]
    assert used["max_abs_error"] < 1e-12
    assert used["round_trip_max_abs_diff"] == 0.0


def test_broken_plugin_is_a_warning_naming_distribution_and_version(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["all_but_duplicate"]
    broken = [w for w in report["warnings"] if "saecore-fixture-broken" in w]
    assert len(broken) == 1, report["warnings"]
    assert broken[0].startswith("RuntimeWarning: ")
    assert "saecore-fixture-broken 0.1.0" in broken[0]
    assert "saecore_fixture_missing_dependency" in broken[0]
    assert "SAECORE_STRICT_PLUGINS=1" in broken[0]
    failure = next(f for f in report["failures"] if f["distribution"] == "saecore-fixture-broken")
    assert failure["version"] == "0.1.0"
    assert failure["error"].startswith("ModuleNotFoundError")
    assert {"fixture_relu", "standard"} <= set(report["architectures"])


def test_misspelled_hook_implementation_is_reported_with_did_you_mean(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["all_but_duplicate"]
    misspelled = [w for w in report["warnings"] if "saecore-fixture-misspelled" in w]
    assert len(misspelled) == 1, report["warnings"]
    assert "saecore-fixture-misspelled 0.1.0" in misspelled[0]
    assert "'saecore_register_architecture'" in misspelled[0]
    assert "did you mean 'saecore_register_architectures'?" in misspelled[0]
    assert "fixture_misspelled" not in report["plugins"]


def test_strict_mode_reraises_a_broken_plugin_as_plugin_load_error(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["strict"]
    assert report["error_type"] == "PluginLoadError"
    assert "saecore-fixture-broken 0.1.0" in report["error"]
    assert "saecore_fixture_missing_dependency" in report["error"]


def test_duplicate_architecture_name_is_an_error_naming_both_providers(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["duplicate"]
    assert report["error_type"] == "DuplicateNameError"
    assert "'standard'" in report["error"]
    assert "saecore-fixture-duplicate 0.1.0 (entry point 'fixture_duplicate')" in report["error"]
    assert f"saecore-sae-standard {version('saecore-sae-standard')} (entry point 'sae_standard')" in report["error"]


def test_only_switch_loads_just_the_named_plugin(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["only_good"]
    assert report["error"] is None
    assert report["plugins"] == ["fixture_good"]
    assert report["core_plugins"] == ["builtin_converters", "builtin_sources"]
    assert report["architectures"] == {"fixture_relu": "saecore-fixture-good"}
    assert report["failures"] == [] and report["warnings"] == []


def test_block_switch_skips_plugins_by_entry_point_or_distribution_name(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["block_bad"]
    assert report["error"] is None
    assert report["failures"] == [] and report["warnings"] == []
    assert {"fixture_good", "sae_standard"} <= set(report["plugins"])
    assert not {"fixture_broken", "fixture_misspelled", "fixture_duplicate"} & set(report["plugins"])
