"""``push_to_hub``: publish one or many SAEs to a Hugging Face Hub repo.

The upload tree is built on local disk first (see :mod:`saecore.publishing.upload_tree`);
then the repo is created if needed and the tree goes up as one commit through one
``HfApi.upload_folder`` call, so a failed push leaves the repo as it was. A dry run stops
after building the tree. Authentication is huggingface_hub's own (``HF_TOKEN`` or
``huggingface-cli login``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saecore.errors import ConfigError
from saecore.publishing.upload_tree import (
    MODEL_CARD_FILENAME,
    SAESource,
    UploadTree,
    build_upload_tree,
    collect_saes,
)

ModelCardPolicy = Literal["always", "if_absent", "never"]


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    files: list[str]
    dry_run_dir: Path | None
    commit_url: str | None


def push_to_hub(
    saes: Mapping[str, SAESource] | str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run_dir: str | Path | None = None,
    model_card: ModelCardPolicy = "always",
) -> PushResult:
    """Upload SAEs with a generated model card; with ``dry_run_dir``, only write the tree there.

    :param saes: ``{sae_id: SAE folder or SAE object}``, one SAE folder (pushed under its
        folder name), or a folder whose subfolders are SAE folders.
    :param repo_id: ``owner/name`` of the model repo; created (``private`` or public) if absent.
    :param revision: branch to commit to; created from main if absent. Default: main.
    :param dry_run_dir: an empty or new folder; the exact upload tree is written there
        and nothing is sent.
    :param model_card: ``always`` writes the generated README.md model card; ``if_absent``
        keeps a README.md the repo already has (a dry run, which asks the Hub nothing,
        writes the card); ``never`` leaves it out.
    """
    _check_repo_id(repo_id)
    collected = collect_saes(saes)
    if dry_run_dir is not None:
        tree = build_upload_tree(collected, Path(dry_run_dir).expanduser(), repo_id, model_card=model_card != "never")
        return PushResult(repo_id=repo_id, files=tree.files(), dry_run_dir=tree.root, commit_url=None)
    with tempfile.TemporaryDirectory(prefix="saecore-push-") as staging:
        tree = build_upload_tree(collected, Path(staging) / "tree", repo_id, model_card=model_card != "never")
        commit_url = _upload(tree, repo_id, private=private, revision=revision, keep_readme=model_card == "if_absent")
        return PushResult(repo_id=repo_id, files=tree.files(), dry_run_dir=None, commit_url=commit_url)


def _upload(tree: UploadTree, repo_id: str, *, private: bool, revision: str | None, keep_readme: bool) -> str:
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    if keep_readme and api.file_exists(repo_id, MODEL_CARD_FILENAME, repo_type="model", revision=revision):
        (tree.root / MODEL_CARD_FILENAME).unlink()
    count = len(tree.sae_ids)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(tree.root),
        repo_type="model",
        revision=revision,
        commit_message=f"Upload {count} SAE{'s' if count != 1 else ''} with saecore",
    )
    return str(commit.commit_url)


def _check_repo_id(repo_id: str) -> None:
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"repo_id {repo_id!r} must be 'owner/name' (a Hugging Face model repo)")
