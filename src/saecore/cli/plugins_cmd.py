"""``saecore plugins``: which plugins are installed and what each registers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from saecore.known_plugins import install_hint
from saecore.registry import TABLES as KINDS
from saecore.registry import get_registry


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(name, help="list installed plugins and what they register")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def plugin_rows() -> list[dict[str, Any]]:
    """One row per distribution (a package may register through several entry points), then one per failure."""
    registry = get_registry()
    by_distribution: dict[str, list[str]] = {}
    for plugin_name, info in sorted(registry.plugins.items()):
        by_distribution.setdefault(info.distribution or plugin_name, []).append(plugin_name)
    rows = []
    for _, names in sorted(by_distribution.items()):
        info = registry.plugins[names[0]]
        registrations = [registry.registrations_of(name) for name in names]
        rows.append({
            "plugin": ", ".join(names),
            "distribution": info.distribution,
            "version": info.version,
            "status": "ok",
            **{kind: sorted(entry for each in registrations for entry in each[kind]) for kind in KINDS},
        })
    for failure in registry.failures:
        rows.append({
            "plugin": failure.plugin.name,
            "distribution": failure.plugin.distribution,
            "version": failure.plugin.version,
            "status": f"failed: {failure.error}",
            **{kind: [] for kind in KINDS},
        })
    return rows


def _listing(kind: str, names: list[str], limit: int = 6) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return f"{len(names)} (saecore {kind})" if kind == "releases" else f"{', '.join(names[:limit])}, ... ({len(names)})"


def run(args: argparse.Namespace) -> int:
    rows = plugin_rows()
    registry = get_registry()
    if args.json:
        print(json.dumps({"plugins": rows, "architectures": sorted(registry.architectures),
                          "training_recipes": sorted(registry.training_recipes),
                          "sources": sorted(registry.sources)}, indent=2))
        return 0
    headers = ["distribution", "version", "registers", "status"]
    table = []
    for row in rows:
        registers = "; ".join(f"{kind.replace('_', ' ')}: {_listing(kind, row[kind])}" for kind in KINDS if row[kind])
        version = row["version"] or ("in-process" if row["distribution"] is None else "-")
        table.append([row["distribution"] or row["plugin"], version, registers or "-", row["status"]])
    widths = [max(len(str(r[i])) for r in [headers, *table]) for i in range(len(headers))]
    for line in [headers, ["-" * w for w in widths], *table]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())
    if not registry.architectures:
        print(f"\nNo SAE architecture is installed. Install one, e.g.: {install_hint('saecore-sae-topk')}")
    return 0
