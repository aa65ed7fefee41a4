"""Files of SAEs published on the Hugging Face Hub.

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache, offline mode
(``HF_HUB_OFFLINE=1``) and authentication apply unchanged. The release's converter
decides which files are read (``saecore.resolver.load_pretrained``).
"""

from __future__ import annotations

from pathlib import Path

from saecore.errors import SAEFileError
from saecore.io.converters import FileLocator


class HubLocator(FileLocator):
    """Files of one SAE of a Hub repo, downloaded one by one (or found in the cache) as a converter asks."""

    def __init__(self, repo_id: str, sae_path: str, *, force_download: bool, revision: str | None) -> None:
        super().__init__(repo_id, sae_path, repo_id)
        self.force_download = force_download
        self.revision = revision

    def find(self, path: str, required: bool) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        path_in_repo = path.strip("/")
        try:
            return Path(hf_hub_download(self.root, path_in_repo, revision=self.revision,
                                        force_download=self.force_download))
        except (EntryNotFoundError, LocalEntryNotFoundError) as error:
            if required:
                raise SAEFileError(f"{self.root}/{path_in_repo}: could not be found or downloaded ({error})") from None
            return None


def hub_locator(repo_id: str, folder: str, *, force_download: bool, revision: str | None) -> FileLocator:
    """Locate (download or find in the cache) the files of the SAE at ``folder`` (a folder or one file) of a repo."""
    return HubLocator(repo_id, folder, force_download=force_download, revision=revision)
