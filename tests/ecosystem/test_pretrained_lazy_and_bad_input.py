"""``SAE.from_pretrained`` fetches one SAE's files, and says what is wrong when a release cannot load.

The Hub cache is laid out as huggingface_hub writes it (``fixtures.hub_cache``), with
offline mode on, so the real download code runs without a network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from ecosystem_helpers import require_architectures
from fixtures.hub_cache import add_repo_snapshot
from fixtures.in_process import ReleasePlugin
from fixtures.saes import randomized_sae

from saecore import SAE, SAEFileError, UnknownNameError, get_registry, known_plugins

AddPlugin = Callable[[Any, str], None]
GPT2_REPO = "jbloom/GPT2-Small-SAEs-Reformatted"


def publish_saelens_folders(hub_cache: Path, tmp_path: Path, repo_id: str, folders: list[str], **fields: Any) -> None:
    files = {}
    for folder in folders:
        local = tmp_path / "local" / folder
        randomized_sae(**fields).save_model(local)
        files.update({f"{folder}/{file.name}": file for file in local.iterdir()})
    add_repo_snapshot(hub_cache, repo_id, files)


def test_from_pretrained_asks_the_hub_only_for_the_files_of_the_sae_it_loads(
        hub_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_architectures("standard")
    publish_saelens_folders(hub_cache, tmp_path, GPT2_REPO, ["blocks.8.hook_resid_pre", "blocks.9.hook_resid_pre"])
    requested: list[str] = []
    download = huggingface_hub.hf_hub_download

    def recording_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        requested.append(filename)
        return download(repo_id, filename, **kwargs)

    def refused_snapshot(*args: Any, **kwargs: Any) -> str:
        raise AssertionError(f"a whole repo was asked for: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refused_snapshot)
    sae = SAE.from_pretrained("gpt2-small-res-jb", "blocks.8.hook_resid_pre")
    assert sae.cfg.d_sae == 16
    assert requested and all(name.startswith("blocks.8.hook_resid_pre/") for name in requested)
    assert "blocks.8.hook_resid_pre/sae_weights.safetensors" in requested


def test_a_folder_lacking_a_file_its_format_needs_names_the_file(hub_cache: Path, tmp_path: Path) -> None:
    folder = "layer_3/width_16k/average_l0_59"
    readme = tmp_path / "README.md"
    readme.write_text("no params.npz here")
    add_repo_snapshot(hub_cache, "google/gemma-scope-2b-pt-res", {f"{folder}/README.md": readme})
    with pytest.raises(SAEFileError, match=rf"google/gemma-scope-2b-pt-res/{folder}/params\.npz: could not be found"):
        SAE.from_pretrained("gemma-scope-2b-pt-res-canonical", "layer_3/width_16k/canonical")


def skip_if_transcoder_converters_installed() -> None:
    """These errors are for an installation without saecore-transcoders, which registers the transcoder formats."""
    if "mwhanna_transcoder" in get_registry().converters:
        pytest.skip("saecore-transcoders is installed: its converters read the transcoder formats")


def test_a_transcoder_format_without_its_plugin_says_transcoder_support_is_needed(add_plugin: AddPlugin) -> None:
    skip_if_transcoder_converters_installed()
    add_plugin(ReleasePlugin("my-lab-clt", "my-lab/clt", {"layer_0": {"path": "l0"}},
                             conversion="mntss_clt_layer_transcoder"), "my_lab")
    with pytest.raises(UnknownNameError, match=r"release 'my-lab-clt' cannot be loaded: the "
                                               r"'mntss_clt_layer_transcoder' format needs transcoder support, "
                                               r"a saecore-transcoders plugin package"):
        SAE.from_pretrained("my-lab-clt", "layer_0")


def test_a_format_whose_plugin_is_not_installed_names_the_package(
        add_plugin: AddPlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(known_plugins.CONVERTER_PACKAGES, "my_format", "saecore-my-format")
    add_plugin(ReleasePlugin("my-lab-res", "my-lab/res", {"a": {"path": "a"}}, conversion="my_format"), "my_lab")
    with pytest.raises(UnknownNameError, match=r"release 'my-lab-res' cannot be loaded: the 'my_format' format needs "
                                               r"the saecore-my-format plugin package: pip install saecore-my-format"):
        SAE.from_pretrained("my-lab-res", "a")


def test_a_format_nobody_provides_lists_the_installed_converters(add_plugin: AddPlugin) -> None:
    add_plugin(ReleasePlugin("my-lab-res", "my-lab/res", {"a": {"path": "a"}}, conversion="no_such_format"), "my_lab")
    with pytest.raises(UnknownNameError, match=r"no installed plugin reads the 'no_such_format' format "
                                               r"\(converters installed: .*sae_lens"):
        SAE.from_pretrained("my-lab-res", "a")


def test_a_config_override_that_contradicts_the_weights_names_both(
        hub_cache: Path, tmp_path: Path, add_plugin: AddPlugin) -> None:
    require_architectures("standard")
    publish_saelens_folders(hub_cache, tmp_path, "my-lab/res", ["layer_0"])
    add_plugin(ReleasePlugin("my-lab-res", "my-lab/res", {"layer_0": {"path": "layer_0"}},
                             config_overrides={"d_sae": 32, "dataset_path": "my-lab/tokens"}), "my_lab")
    with pytest.raises(SAEFileError) as caught:
        SAE.from_pretrained("my-lab-res", "layer_0")
    message = str(caught.value)
    assert message.startswith("release 'my-lab-res', sae_id 'layer_0': the directory's config override d_sae=32 "
                              "(the files say 16) contradicts the weights in ")
    assert "layer_0/sae_weights.safetensors" in message and "dataset_path" not in message


def test_a_converter_named_for_a_local_folder_names_the_package_that_provides_it(tmp_path: Path) -> None:
    skip_if_transcoder_converters_installed()
    with pytest.raises(UnknownNameError, match=r"converter 'mwhanna_transcoder' is not installed: "
                                               r"pip install saecore-transcoders"):
        SAE.load_from_disk(tmp_path, converter="mwhanna_transcoder")
