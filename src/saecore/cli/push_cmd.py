"""``saecore push PATH REPO_ID``: publish SAEs to the Hugging Face Hub with a generated model card."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(
        name, help="upload SAEs to a Hugging Face Hub repo, with a generated README model card",
        description="Upload an SAE folder (cfg.json + sae_weights.safetensors), or a folder of SAE folders, "
                    "to a Hub model repo in one commit. Each SAE becomes a folder of the repo, named after its "
                    "local folder; README.md is generated and replaces the repo's card.",
    )
    parser.add_argument("path", help="an SAE folder, or a folder whose subfolders are SAE folders")
    parser.add_argument("repo_id", help="the Hub model repo, owner/name (created if it does not exist)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", default=None, help="branch to commit to (created if absent; default: main)")
    parser.add_argument("--dry-run", metavar="OUT_DIR", default=None,
                        help="write the exact upload tree to OUT_DIR (empty or new) and upload nothing")


def run(args: argparse.Namespace) -> int:
    from saecore.publishing import push_to_hub

    result = push_to_hub(args.path, args.repo_id, private=args.private, revision=args.revision,
                         dry_run_dir=args.dry_run)
    for path in result.files:
        print(path)
    if result.dry_run_dir is not None:
        print(f"\nDry run: wrote {len(result.files)} files to {result.dry_run_dir}; nothing was uploaded.")
    else:
        print(f"\nUploaded {len(result.files)} files to https://huggingface.co/{result.repo_id} ({result.commit_url})")
    return 0
