"""``SAE.from_pretrained`` through the real ``huggingface_hub`` download code, offline.

A Hub cache is laid out on disk as huggingface_hub writes it, and offline mode is on, so
``hf_hub_download`` resolves files exactly as it would for a user who downloaded before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import torch
from fixtures.hub_cache import add_repo_snapshot
from fixtures.in_process import ReleasePlugin
from fixtures.saes import randomized_sae, relu_sae_reference
from safetensors.torch import load_file, save_file

from saecore import SAE, SAEFileError, UnknownNameError
from saecore.io.pretrained_loaders import sae_lens_disk_loader, sae_lens_huggingface_loader

AddPlugin = Callable[[Any, str], None]
REPO = "fixture-owner/fixture-saes"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty offline Hub cache; huggingface_hub read its settings at import, so patch them too."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def publish(
    hub_cache: Path, tmp_path: Path, folder: str, sparsity: torch.Tensor | None = None, **fields: Any
) -> SAE[Any]:
    """Save a random standard SAE and place it in the cache at ``REPO/folder``; return the original."""
    sae = randomized_sae(**fields)
    local = tmp_path / "published" / folder
    sae.save_model(local)
    if sparsity is not None:
        save_file({"sparsity": sparsity}, str(local / "sparsity.safetensors"))
    add_repo_snapshot(hub_cache, REPO, {f"{folder}/{f.name}": f for f in local.iterdir()})
    return sae


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(6, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def test_repo_id_and_folder_load_an_identical_sae(hub_cache: Path, tmp_path: Path, x: torch.Tensor) -> None:
    original = publish(hub_cache, tmp_path, "layer_2")
    sae = SAE.from_pretrained(REPO, "layer_2", dtype="float64")
    assert type(sae) is type(original)
    assert torch.equal(sae(x), original(x))


def test_default_dtype_is_float32(hub_cache: Path, tmp_path: Path, x: torch.Tensor) -> None:
    original = publish(hub_cache, tmp_path, "layer_2")
    sae = SAE.from_pretrained(REPO, "layer_2")
    assert sae.cfg.dtype == "float32" and sae.W_enc.dtype == torch.float32
    torch.testing.assert_close(sae(x).double(), relu_sae_reference(original, x), rtol=1e-5, atol=1e-4)


def test_tuple_unpacking_still_works_with_a_deprecation_warning(hub_cache: Path, tmp_path: Path) -> None:
    publish(hub_cache, tmp_path, "layer_2")
    with pytest.warns(DeprecationWarning, match="from_pretrained_with_cfg_and_sparsity"):
        sae, cfg_dict, sparsity = SAE.from_pretrained(REPO, "layer_2")
    assert isinstance(sae, SAE)
    assert cfg_dict == sae.cfg.to_dict()
    assert sparsity is None


@pytest.mark.parametrize(
    "method", ["from_pretrained_with_cfg_and_sparsity", "load_from_pretrained_with_cfg_and_sparsity"]
)
def test_cfg_and_sparsity_variants_return_all_three(hub_cache: Path, tmp_path: Path, method: str) -> None:
    log_sparsity = torch.linspace(-6, 0, 16)
    publish(hub_cache, tmp_path, "with_sparsity", sparsity=log_sparsity)
    publish(hub_cache, tmp_path, "without_sparsity")
    sae, cfg_dict, sparsity = getattr(SAE, method)(REPO, "with_sparsity")
    assert cfg_dict["architecture"] == "standard" and cfg_dict["d_sae"] == 16
    assert cfg_dict == sae.cfg.to_dict()
    assert sparsity is not None and torch.equal(sparsity, log_sparsity)
    assert getattr(SAE, method)(REPO, "without_sparsity")[2] is None


def test_fold_w_dec_norm_keeps_outputs(hub_cache: Path, tmp_path: Path, x: torch.Tensor) -> None:
    original = publish(hub_cache, tmp_path, "layer_2")
    sae = SAE.from_pretrained(REPO, "layer_2", dtype="float64", fold_W_dec_norm=True)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(16, dtype=torch.float64))
    torch.testing.assert_close(sae(x), relu_sae_reference(original, x), rtol=0, atol=1e-12)


def test_missing_folder_in_repo_names_repo_and_file(hub_cache: Path, tmp_path: Path) -> None:
    publish(hub_cache, tmp_path, "layer_2")
    with pytest.raises(SAEFileError, match=f"^{REPO}/layer_9/cfg.json: could not be found or downloaded"):
        SAE.from_pretrained(REPO, "layer_9")


def test_registered_release_resolves_and_folds_the_norm_scaling_factor(
    hub_cache: Path, tmp_path: Path, add_plugin: AddPlugin, x: torch.Tensor
) -> None:
    scale = 2.5
    original = publish(hub_cache, tmp_path, "blocks_2", normalize_activations="expected_average_only_in")
    add_plugin(ReleasePlugin("fixture-release", REPO, {"blocks.2": {"path": "blocks_2", "norm_scaling_factor": scale}}),
               "releases")
    sae = SAE.from_pretrained("fixture-release", "blocks.2", dtype="float64")
    assert sae.cfg.normalize_activations == "none"
    expected = relu_sae_reference(original, x * scale) / scale
    torch.testing.assert_close(sae(x), expected, rtol=0, atol=1e-12)


def test_norm_scaling_factor_is_not_folded_without_expected_average_only_in(
    hub_cache: Path, tmp_path: Path, add_plugin: AddPlugin, x: torch.Tensor
) -> None:
    original = publish(hub_cache, tmp_path, "blocks_2")
    add_plugin(ReleasePlugin("fixture-release", REPO, {"blocks.2": {"path": "blocks_2", "norm_scaling_factor": 2.5}}),
               "releases")
    sae = SAE.from_pretrained("fixture-release", "blocks.2", dtype="float64")
    assert torch.equal(sae(x), original(x))


def test_unknown_release_lists_close_matches(add_plugin: AddPlugin) -> None:
    add_plugin(ReleasePlugin("fixture-release-res-jb", REPO, {"blocks.2": {"path": "blocks_2"}}), "releases")
    with pytest.raises(UnknownNameError) as caught:
        SAE.from_pretrained("fixture-release-res-bj", "blocks.2")
    message = str(caught.value)
    assert "'fixture-release-res-bj' is neither a known release nor a Hugging Face repo id" in message
    assert "Did you mean: fixture-release-res-jb?" in message


@pytest.mark.parametrize(("release", "sae_id"), [("wrong", "x"), ("fixture-release", "x")])
def test_an_unknown_release_or_sae_id_is_a_value_error_as_in_saelens(add_plugin: AddPlugin, release: str,
                                                                     sae_id: str) -> None:
    add_plugin(ReleasePlugin("fixture-release", REPO, {"blocks.2": {"path": "blocks_2"}}), "releases")
    with pytest.raises(ValueError, match=repr(release) if release == "wrong" else "sae_id 'x'") as caught:
        SAE.from_pretrained(release, sae_id)
    assert isinstance(caught.value, UnknownNameError)


def test_unknown_sae_id_in_a_release_lists_close_matches(add_plugin: AddPlugin) -> None:
    add_plugin(ReleasePlugin("fixture-release", REPO, {"blocks.2": {"path": "blocks_2"}}), "releases")
    expected = r"sae_id 'blocks.3' is not in release 'fixture-release'; did you mean blocks.2\?"
    with pytest.raises(UnknownNameError, match=expected):
        SAE.from_pretrained("fixture-release", "blocks.3")


def test_a_saelens_style_hub_loader_callable_is_called_as_saelens_calls_it(
    hub_cache: Path, tmp_path: Path, add_plugin: AddPlugin, x: torch.Tensor
) -> None:
    original = publish(hub_cache, tmp_path, "blocks_2", sparsity=torch.linspace(-6, 0, 16))
    add_plugin(ReleasePlugin("fixture-release", REPO, {"blocks.2": {"path": "blocks_2"}},
                             config_overrides={"metadata": {"hook_name": "blocks.2.hook_resid_pre"}}), "releases")
    calls: list[dict[str, Any]] = []

    def my_loader(repo_id: str, folder_name: str, device: str, force_download: bool,
                  cfg_overrides: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
        calls.append({"repo_id": repo_id, "folder_name": folder_name, "device": device,
                      "force_download": force_download, "cfg_overrides": cfg_overrides})
        return sae_lens_huggingface_loader(repo_id, folder_name, device, force_download, cfg_overrides)

    sae, _, sparsity = SAE.from_pretrained_with_cfg_and_sparsity("fixture-release", "blocks.2", dtype="float64",
                                                                 converter=my_loader)
    assert calls == [{"repo_id": REPO, "folder_name": "blocks_2", "device": "cpu", "force_download": False,
                      "cfg_overrides": {"metadata": {"hook_name": "blocks.2.hook_resid_pre"},
                                        "device": "cpu", "dtype": "float64"}}]
    assert sae.cfg.metadata.hook_name == "blocks.2.hook_resid_pre"
    assert torch.equal(sae(x), original(x))
    assert sparsity is not None and torch.equal(sparsity, torch.linspace(-6, 0, 16))


def test_a_disk_loader_callable_reads_a_folder_of_another_layout(tmp_path: Path, x: torch.Tensor) -> None:
    original = randomized_sae()
    original.save_model(tmp_path / "saved")
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "config.json").write_text((tmp_path / "saved" / "cfg.json").read_text())
    weights = load_file(str(tmp_path / "saved" / "sae_weights.safetensors"))
    save_file({f"sae.{name}": tensor for name, tensor in weights.items()}, str(renamed / "weights.safetensors"))

    def renamed_loader(path: str | Path, device: str, cfg_overrides: dict[str, Any] | None) -> tuple[
        dict[str, Any], dict[str, torch.Tensor]
    ]:
        cfg = {**json.loads((Path(path) / "config.json").read_text()), "device": device, **(cfg_overrides or {})}
        tensors = load_file(str(Path(path) / "weights.safetensors"), device=device)
        return cfg, {name.removeprefix("sae."): tensor for name, tensor in tensors.items()}

    sae = SAE.load_from_disk(renamed, converter=renamed_loader)
    assert torch.equal(sae(x), original(x))
    assert SAE.load_from_disk(renamed, dtype="float32", converter=renamed_loader).W_enc.dtype == torch.float32
    default = SAE.load_from_disk(tmp_path / "saved", converter=sae_lens_disk_loader)
    assert torch.equal(default(x), original(x))


def test_a_disk_loader_whose_tensors_do_not_fit_is_named_in_the_error(tmp_path: Path) -> None:
    randomized_sae().save_model(tmp_path)

    def truncating_loader(path: str | Path, device: str, cfg_overrides: dict[str, Any] | None) -> tuple[
        dict[str, Any], dict[str, torch.Tensor]
    ]:
        cfg, tensors = sae_lens_disk_loader(path, device, cfg_overrides)
        return cfg, {name: tensor for name, tensor in tensors.items() if name != "b_enc"}

    with pytest.raises(SAEFileError, match=r"truncating_loader\("):
        SAE.load_from_disk(tmp_path, converter=truncating_loader)
