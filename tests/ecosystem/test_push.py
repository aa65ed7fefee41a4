"""Publishing: the exact upload tree a push builds, and the single upload call that sends it.

Dry runs are checked file by file (names, bytes, the model card's full text). The real
upload is exercised with ``HfApi``'s network methods replaced by recorders: they see the
arguments and the folder as huggingface_hub would, and nothing leaves the machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch
from ecosystem_helpers import require_architectures
from huggingface_hub import HfApi

from saecore import SAE, ConfigError, SAEFileError, __version__
from saecore.cli import push_cmd
from saecore.publishing import push_to_hub, upload_saes_to_huggingface

REPO = "me/gpt2-saes"
LAYER_0, LAYER_1 = "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"


def save_sae(folder: Path, layer: int, trained: bool, sparsity: torch.Tensor | None = None) -> SAE[Any]:
    metadata: dict[str, Any] = {"model_name": "gpt2", "hook_name": f"blocks.{layer}.hook_resid_post",
                                "dataset_path": "Skylion007/openwebtext", "context_size": 128}
    if trained:
        metadata.update(l0=31.25, explained_variance=0.91234, num_dead_features=3, training_architecture="standard")
    sae = SAE.from_dict({"architecture": "standard", "d_in": 8, "d_sae": 16, "metadata": metadata})
    sae.save_model(folder, sparsity=sparsity)
    return sae


@pytest.fixture
def sae_folders(tmp_path: Path) -> Path:
    """A training output folder holding two SAE folders, the first with a sparsity file."""
    require_architectures("standard")
    root = tmp_path / "trained"
    save_sae(root / LAYER_0, 0, trained=True, sparsity=torch.linspace(-6, 0, 16))
    save_sae(root / LAYER_1, 1, trained=False)
    (root / "notes.txt").write_text("not an SAE")
    return root


EXPECTED_CARD = f"""---
library_name: saecore
tags:
- sparse-autoencoder
- saecore
- saelens
---

# Sparse autoencoders in me/gpt2-saes

2 sparse autoencoders in the SAELens v6 format (`cfg.json` + `sae_weights.safetensors`), published with \
saecore {__version__}. Each SAE is a folder of this repo; its name is the `sae_id`.

| sae_id | architecture | d_in | d_sae | model | hook | L0 | explained variance |
| --- | --- | --- | --- | --- | --- | --- | --- |
| `blocks.0.hook_resid_post` | standard | 8 | 16 | gpt2 | `blocks.0.hook_resid_post` | 31.25 | 0.9123 |
| `blocks.1.hook_resid_post` | standard | 8 | 16 | gpt2 | `blocks.1.hook_resid_post` | - | - |

## Loading

With saecore (`pip install saecore saecore-sae-standard`):

```python
from saecore import SAE

sae = SAE.from_pretrained("me/gpt2-saes", "blocks.0.hook_resid_post")
```

With SAELens 6 (`pip install sae-lens`):

```python
from sae_lens import SAE

sae = SAE.from_pretrained("me/gpt2-saes", "blocks.0.hook_resid_post")
```

## Details

### blocks.0.hook_resid_post

- dtype: `float32`
- input normalisation: `none`
- subtracts b_dec from its input: yes
- training recipe: standard
- dataset: Skylion007/openwebtext
- context size: 128
- dead features: 3
- feature sparsity file: yes

### blocks.1.hook_resid_post

- dtype: `float32`
- input normalisation: `none`
- subtracts b_dec from its input: yes
- dataset: Skylion007/openwebtext
- context size: 128
- feature sparsity file: no
"""
EXPECTED_FILES = [
    "README.md",
    f"{LAYER_0}/cfg.json",
    f"{LAYER_0}/sae_weights.safetensors",
    f"{LAYER_0}/sparsity.safetensors",
    f"{LAYER_1}/cfg.json",
    f"{LAYER_1}/sae_weights.safetensors",
]


def test_dry_run_writes_the_exact_upload_tree(sae_folders: Path, tmp_path: Path) -> None:
    result = push_to_hub(sae_folders, REPO, dry_run_dir=tmp_path / "tree")
    tree = tmp_path / "tree"
    assert result.files == EXPECTED_FILES
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()) == EXPECTED_FILES
    assert (tree / "README.md").read_text() == EXPECTED_CARD
    for path in EXPECTED_FILES[1:]:
        assert (tree / path).read_bytes() == (sae_folders / path).read_bytes(), path
    assert result.dry_run_dir == tree and result.commit_url is None


def test_a_mapping_of_saes_and_folders_is_pushed_under_the_given_ids(sae_folders: Path, tmp_path: Path) -> None:
    in_memory = SAE.load_from_disk(sae_folders / LAYER_1)
    result = push_to_hub({"mlp/layer_1": in_memory, "resid/layer_0": sae_folders / LAYER_0}, REPO,
                         dry_run_dir=tmp_path / "tree")
    assert result.files == ["README.md", "mlp/layer_1/cfg.json", "mlp/layer_1/sae_weights.safetensors",
                            "resid/layer_0/cfg.json", "resid/layer_0/sae_weights.safetensors",
                            "resid/layer_0/sparsity.safetensors"]
    reloaded = SAE.load_from_disk(tmp_path / "tree" / "mlp" / "layer_1")
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(reloaded(x), in_memory(x))
    assert "| `mlp/layer_1` | standard |" in (tmp_path / "tree" / "README.md").read_text()


def test_one_sae_folder_is_pushed_under_its_folder_name(sae_folders: Path, tmp_path: Path) -> None:
    result = push_to_hub(sae_folders / LAYER_1, REPO, dry_run_dir=tmp_path / "tree")
    assert result.files == ["README.md", f"{LAYER_1}/cfg.json", f"{LAYER_1}/sae_weights.safetensors"]
    assert "One sparse autoencoder in the SAELens v6 format" in (tmp_path / "tree" / "README.md").read_text()


class RecordingHfApi:
    """Stands in for HfApi's three network calls; records what each was asked to do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, api: HfApi, repo_id: str, **kwargs: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, api: HfApi, repo_id: str, **kwargs: Any) -> None:
        self.calls.append(("create_branch", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, api: HfApi, **kwargs: Any) -> Any:
        self.calls.append(("upload_folder", kwargs))
        root = Path(kwargs["folder_path"])
        self.uploaded = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc123"})()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> RecordingHfApi:
    recorder = RecordingHfApi()
    for name in ("create_repo", "create_branch", "upload_folder"):
        bound = getattr(recorder, name)
        monkeypatch.setattr(HfApi, name, lambda api, *args, _bound=bound, **kwargs: _bound(api, *args, **kwargs))
    return recorder


def test_push_creates_the_repo_then_uploads_the_tree_in_one_call(sae_folders: Path, tmp_path: Path,
                                                                 hub: RecordingHfApi) -> None:
    result = push_to_hub(sae_folders, REPO, private=True)
    assert [name for name, _ in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][1] == {"repo_id": REPO, "repo_type": "model", "private": True, "exist_ok": True}
    upload = hub.calls[1][1]
    assert (upload["repo_id"], upload["repo_type"], upload["revision"]) == (REPO, "model", None)
    assert upload["commit_message"] == "Upload 2 SAEs with saecore"
    assert sorted(hub.uploaded) == EXPECTED_FILES
    assert hub.uploaded["README.md"].decode() == EXPECTED_CARD
    assert not Path(upload["folder_path"]).exists()
    assert result.files == EXPECTED_FILES
    assert result.commit_url == f"https://huggingface.co/{REPO}/commit/abc123"


def test_push_to_a_revision_creates_the_branch_first(sae_folders: Path, hub: RecordingHfApi) -> None:
    push_to_hub(sae_folders / LAYER_0, REPO, revision="v2")
    assert [name for name, _ in hub.calls] == ["create_repo", "create_branch", "upload_folder"]
    assert hub.calls[0][1]["private"] is False
    assert hub.calls[1][1] == {"repo_id": REPO, "branch": "v2", "repo_type": "model", "exist_ok": True}
    assert hub.calls[2][1]["revision"] == "v2"
    assert hub.calls[2][1]["commit_message"] == "Upload 1 SAE with saecore"


def run_push(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="saecore")
    commands = parser.add_subparsers(dest="command", required=True)
    push_cmd.add_parser(commands, "push")
    return push_cmd.run(parser.parse_args(["push", *argv]))


def test_cli_dry_run_prints_the_tree_and_uploads_nothing(sae_folders: Path, tmp_path: Path, hub: RecordingHfApi,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run_push(str(sae_folders), REPO, "--dry-run", str(tmp_path / "tree")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:len(EXPECTED_FILES)] == EXPECTED_FILES
    assert out[-1] == f"Dry run: wrote 6 files to {tmp_path / 'tree'}; nothing was uploaded."
    assert hub.calls == []
    assert (tmp_path / "tree" / "README.md").read_text() == EXPECTED_CARD


def test_cli_push_passes_private_and_revision(sae_folders: Path, hub: RecordingHfApi,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run_push(str(sae_folders), REPO, "--private", "--revision", "dev") == 0
    assert hub.calls[0][1]["private"] is True and hub.calls[2][1]["revision"] == "dev"
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"Uploaded 6 files to https://huggingface.co/{REPO} (https://huggingface.co/{REPO}/commit/abc123)")


def test_dry_run_refuses_a_folder_that_already_holds_files(sae_folders: Path, tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "old.txt").write_text("left over")
    with pytest.raises(ConfigError, match=r"tree: the upload tree must be built in an empty or new folder"):
        push_to_hub(sae_folders, REPO, dry_run_dir=tmp_path / "tree")


@pytest.mark.parametrize("repo_id", ["no-owner", "a/b/c", "/name"])
def test_repo_id_must_be_owner_slash_name(sae_folders: Path, tmp_path: Path, repo_id: str) -> None:
    with pytest.raises(ConfigError, match=rf"repo_id '{repo_id}' must be 'owner/name'"):
        push_to_hub(sae_folders, repo_id, dry_run_dir=tmp_path / "tree")


@pytest.mark.parametrize("sae_id", ["../escape", "/absolute", "a/./b", "README.md", ""])
def test_sae_ids_must_be_folders_inside_the_repo(sae_folders: Path, tmp_path: Path, sae_id: str) -> None:
    with pytest.raises(ConfigError, match="sae_id"):
        push_to_hub({sae_id: sae_folders / LAYER_0}, REPO, dry_run_dir=tmp_path / "tree")


def test_a_folder_without_saes_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SAEFileError, match=r"empty: no SAE found; expected a folder holding cfg\.json"):
        push_to_hub(tmp_path / "empty", REPO, dry_run_dir=tmp_path / "tree")


def test_a_folder_missing_its_weights_is_named(sae_folders: Path, tmp_path: Path) -> None:
    (sae_folders / LAYER_1 / "sae_weights.safetensors").unlink()
    with pytest.raises(SAEFileError, match=r"sae_weights\.safetensors: no such file \(an SAE folder to push needs"):
        push_to_hub(sae_folders, REPO, dry_run_dir=tmp_path / "tree")


@pytest.fixture
def repo_has_readme(monkeypatch: pytest.MonkeyPatch, hub: RecordingHfApi) -> list[bool]:
    """Whether the repo already has a README.md (set by the test); the question is recorded as a call."""
    answer = [False]

    def file_exists(api: HfApi, repo_id: str, filename: str, **kwargs: Any) -> bool:
        hub.calls.append(("file_exists", {"repo_id": repo_id, "filename": filename, **kwargs}))
        return answer[0]

    monkeypatch.setattr(HfApi, "file_exists", file_exists)
    return answer


def test_upload_saes_to_huggingface_sends_saes_and_folders_in_one_commit(
    sae_folders: Path, hub: RecordingHfApi, repo_has_readme: list[bool]
) -> None:
    sae = SAE.load_from_disk(sae_folders / LAYER_1)
    upload_saes_to_huggingface({LAYER_0: sae_folders / LAYER_0, LAYER_1: sae}, REPO)
    assert [name for name, _ in hub.calls] == ["create_repo", "file_exists", "upload_folder"]
    assert hub.calls[1][1] == {"repo_id": REPO, "filename": "README.md", "repo_type": "model", "revision": None}
    assert hub.calls[2][1]["revision"] is None
    assert sorted(hub.uploaded) == EXPECTED_FILES
    assert hub.uploaded["README.md"].decode() == EXPECTED_CARD


def test_upload_saes_to_huggingface_keeps_an_existing_readme(
    sae_folders: Path, hub: RecordingHfApi, repo_has_readme: list[bool]
) -> None:
    repo_has_readme[0] = True
    upload_saes_to_huggingface({LAYER_0: str(sae_folders / LAYER_0)}, REPO, hf_revision="v2")
    assert [name for name, _ in hub.calls] == ["create_repo", "create_branch", "file_exists", "upload_folder"]
    assert hub.calls[3][1]["revision"] == "v2"
    assert "README.md" not in hub.uploaded and f"{LAYER_0}/cfg.json" in hub.uploaded


def test_upload_saes_to_huggingface_without_the_default_readme(sae_folders: Path, hub: RecordingHfApi) -> None:
    upload_saes_to_huggingface({LAYER_0: sae_folders / LAYER_0}, REPO, add_default_readme=False)
    assert [name for name, _ in hub.calls] == ["create_repo", "upload_folder"]
    assert sorted(hub.uploaded) == [name for name in EXPECTED_FILES if name.startswith(LAYER_0)]


def test_upload_saes_to_huggingface_checks_every_sae_before_sending_anything(
    sae_folders: Path, tmp_path: Path, hub: RecordingHfApi
) -> None:
    with pytest.raises(ValueError, match="nothing to push"):
        upload_saes_to_huggingface({}, REPO)
    with pytest.raises(SAEFileError, match=r"missing/cfg\.json: no such file"):
        upload_saes_to_huggingface({LAYER_0: sae_folders / LAYER_0, "x": tmp_path / "missing"}, REPO)
    assert hub.calls == []
