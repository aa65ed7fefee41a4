"""Files of SAEs published on the Hugging Face Hub.

Downloads go through ``huggingface_hub.hf_hub_download``, so its cache, offline mode
(``HF_HUB_OFFLINE=1``) and authentication apply unchanged. The release's converter
decides which files are read (``saecore.resolver.load_pretrained``).
"""

from __future__ import annotations

from pathlib import Path

from saecore.errors import SAEFileError
from saecore.io.converters import FileLocator


def hub_locator(repo_id: str, folder: str, *, force_download: bool, revision: str | None) -> FileLocator:
    """Locate (download or find in the cache) files of one SAE folder of a Hub repo."""

    def locate(filename: str, required: bool) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        path_in_repo = f"{folder.strip('/')}/{filename}" if folder.strip("/") else filename
        try:
            return Path(hf_hub_download(repo_id, path_in_repo, revision=revision, force_download=force_download))
        except (EntryNotFoundError, LocalEntryNotFoundError) as error:
            if required:
                raise SAEFileError(f"{repo_id}/{path_in_repo}: could not be found or downloaded ({error})") from None
            return None

    return locate
