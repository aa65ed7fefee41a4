"""``saecore releases [PATTERN]``: the pretrained releases ``SAE.from_pretrained`` knows."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from saecore.registry import ReleaseEntry
from saecore.releases import DEFAULT_CONVERSION, find_releases

_SAE_COLUMNS = (
    ("path", "path"), ("l0", "L0"), ("variance_explained", "var. explained"), ("neuronpedia", "neuronpedia"),
)


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(name, help="list pretrained SAE releases (for SAE.from_pretrained)")
    parser.add_argument("pattern", nargs="?", default=None,
                        help="substring of the release name, repo id or model; or a glob like 'gemma-scope-*'")
    parser.add_argument("--saes", action="store_true", help="also list each release's sae_ids")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def release_record(entry: ReleaseEntry, with_saes: bool) -> dict[str, Any]:
    record: dict[str, Any] = {
        "release": entry.name,
        "repo_id": entry.repo_id,
        "model": entry.fields.get("model"),
        "n_saes": len(entry.saes),
        "conversion": entry.fields.get("conversion") or DEFAULT_CONVERSION,
        "provider": entry.provider.distribution or entry.provider.name,
    }
    if with_saes:
        record["saes"] = dict(entry.saes)
    return record


def run(args: argparse.Namespace) -> int:
    entries = find_releases(args.pattern)
    if args.json:
        print(json.dumps([release_record(entry, args.saes) for entry in entries], indent=2))
        return 0
    if not entries:
        print(f"No release matches {args.pattern!r}; run `saecore releases` to list them all.", file=sys.stderr)
        return 0
    rows = [[e.name, e.repo_id, str(e.fields.get("model") or "-"), str(len(e.saes)),
             str(e.fields.get("conversion") or DEFAULT_CONVERSION)] for e in entries]
    _print_table(["release", "repo", "model", "#saes", "conversion"], rows)
    if args.saes:
        for entry in entries:
            print(f"\n{entry.name} ({entry.repo_id})")
            _print_table(["sae_id", *(label for _, label in _SAE_COLUMNS)],
                         [[sae_id, *(_cell(sae.get(key)) for key, _ in _SAE_COLUMNS)]
                          for sae_id, sae in entry.saes.items()])
    print(f"\n{len(entries)} release(s). Load one with SAE.from_pretrained(RELEASE, SAE_ID); "
          "list its sae_ids with `saecore releases RELEASE --saes`.")
    return 0


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for line in [headers, ["-" * width for width in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
