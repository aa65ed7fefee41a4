"""``saecore releases [PATTERN]``: the pretrained releases ``SAE.from_pretrained`` knows."""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Sequence
from typing import Any

from saecore.registry import ReleaseEntry, get_registry
from saecore.releases import find_releases, missing_plugins, release_conversion

_NAMES_SHOWN = 4
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
    missing = missing_plugins(entry)
    record: dict[str, Any] = {
        "release": entry.name,
        "repo_id": entry.repo_id,
        "model": entry.fields.get("model"),
        "n_saes": len(entry.saes),
        "conversion": release_conversion(entry),
        "provider": entry.provider.distribution or entry.provider.name,
        "loadable": not missing,
        "missing": missing,
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
        close = difflib.get_close_matches(args.pattern, sorted(get_registry().releases), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        print(f"No release matches {args.pattern!r}.{hint} Run `saecore releases` to list them all.", file=sys.stderr)
        return 0
    missing = {entry.name: missing_plugins(entry) for entry in entries}
    rows = [[e.name, e.repo_id, str(e.fields.get("model") or "-"), str(len(e.saes)), release_conversion(e),
             "no" if missing[e.name] else "yes"] for e in entries]
    _print_table(["release", "repo", "model", "#saes", "conversion", "loadable"], rows)
    if args.saes:
        for entry in entries:
            print(f"\n{entry.name} ({entry.repo_id})")
            _print_table(["sae_id", *(label for _, label in _SAE_COLUMNS)],
                         [[sae_id, *(_cell(sae.get(key)) for key, _ in _SAE_COLUMNS)]
                          for sae_id, sae in entry.saes.items()])
    _print_formats(entries, missing)
    _print_blocked(missing)
    print(f"\n{len(entries)} release(s). Load one with SAE.from_pretrained(RELEASE, SAE_ID); "
          "list its sae_ids with `saecore releases RELEASE --saes`.")
    return 0


def _print_formats(entries: Sequence[ReleaseEntry], missing: dict[str, list[str]]) -> None:
    """Releases and SAEs per format, and how many of those releases the installed plugins load."""
    counts: dict[str, list[int]] = {}
    for entry in entries:
        count = counts.setdefault(release_conversion(entry), [0, 0, 0])
        count[0] += 1
        count[1] += len(entry.saes)
        count[2] += not missing[entry.name]
    print()
    _print_table(["format", "releases", "#saes", "loadable releases"],
                 [[name, str(n_releases), str(n_saes), str(n_loadable)]
                  for name, (n_releases, n_saes, n_loadable) in sorted(counts.items(), key=lambda item: -item[1][1])])


def _print_blocked(missing: dict[str, list[str]]) -> None:
    """Why releases do not load, each reason once with the releases it holds back."""
    by_reason: dict[str, list[str]] = {}
    for name, reasons in missing.items():
        for reason in reasons:
            by_reason.setdefault(reason, []).append(name)
    if not by_reason:
        return
    print("\nNot loadable with the installed plugins:")
    for reason, names in by_reason.items():
        more = f", ... ({len(names)} releases)" if len(names) > _NAMES_SHOWN else ""
        shown = ", ".join(names[:_NAMES_SHOWN]) + more
        print(f"  {reason}\n    {shown}")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for line in [headers, ["-" * width for width in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
