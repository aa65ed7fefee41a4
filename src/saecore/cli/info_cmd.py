"""``saecore info PATH_OR_REPO [SAE_ID]``: describe a saved or published SAE."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from saecore.registry import get_registry


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(name, help="describe an SAE folder, Hub repo or release")
    parser.add_argument("target", help="an SAE folder, a Hub repo id (owner/name) or a release name")
    parser.add_argument("sae_id", nargs="?", default="", help="folder inside the repo, or the release's sae_id")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def describe(target: str, sae_id: str) -> dict[str, Any]:
    from saecore.sae import SAE

    looks_like_path = target.startswith((".", "/", "~")) or target.count("/") > 1
    if Path(target).expanduser().is_dir() or looks_like_path:
        sae = SAE.load_from_disk(Path(target).expanduser())
        where = str(Path(target).resolve())
    else:
        sae = SAE.from_pretrained(target, sae_id)
        where = f"{target} {sae_id}".strip()
    cfg = sae.cfg.to_dict()
    entry = get_registry().architecture(cfg["architecture"])
    provider = entry.provider
    return {
        "source": where,
        "architecture": cfg["architecture"],
        "class": type(sae).__name__,
        "plugin": f"{provider.distribution or provider.name} {provider.version or ''}".strip(),
        "d_in": cfg["d_in"],
        "d_sae": cfg["d_sae"],
        "dtype": cfg["dtype"],
        "apply_b_dec_to_input": cfg["apply_b_dec_to_input"],
        "normalize_activations": cfg["normalize_activations"],
        "fields": {k: v for k, v in cfg.items() if k not in {
            "d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
            "architecture", "metadata", "reshape_activations"}},
        "metadata": cfg["metadata"],
    }


def run(args: argparse.Namespace) -> int:
    info = describe(args.target, args.sae_id)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    fields = {key: info[key] for key in ("source", "architecture", "class", "plugin", "d_in", "d_sae", "dtype",
                                         "apply_b_dec_to_input", "normalize_activations")}
    fields.update(info["fields"])
    print(_aligned(fields, indent=""))
    print("metadata:")
    metadata = {key: json.dumps(value, default=str) for key, value in sorted(info["metadata"].items())}
    if metadata:
        print(_aligned(metadata, indent="  "))
    return 0


def _aligned(rows: dict[str, Any], indent: str) -> str:
    """``key  value`` lines with the values in one column, after the longest key."""
    width = max(len(key) for key in rows)
    return "\n".join(f"{indent}{key:{width}}  {value}" for key, value in rows.items())
