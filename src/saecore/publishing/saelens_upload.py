"""``upload_saes_to_huggingface``: SAELens's upload function, on saecore's :func:`push_to_hub`.

The SAEs go up together in one commit rather than one commit each, so a failed upload
leaves the repo as it was; everything else is SAELens's contract: the SAEs of
``saes_dict`` (objects or folders) land in folders named by their ids, the repo is
created when absent, and with ``add_default_readme`` a model card is added unless the
repo already has a README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from saecore.publishing.push import push_to_hub
from saecore.sae import SAE


def upload_saes_to_huggingface(
    saes_dict: Mapping[str, SAE[Any] | Path | str],
    hf_repo_id: str,
    hf_revision: str = "main",
    show_progress: bool = True,
    add_default_readme: bool = True,
) -> None:
    """Upload ``{sae_id: SAE or SAE folder}`` to the model repo ``hf_repo_id`` at branch ``hf_revision``.

    ``show_progress`` is kept for SAELens's signature: the single upload shows
    huggingface_hub's own progress bars.
    """
    push_to_hub(saes_dict, hf_repo_id, revision=None if hf_revision == "main" else hf_revision,
                model_card="if_absent" if add_default_readme else "never")
