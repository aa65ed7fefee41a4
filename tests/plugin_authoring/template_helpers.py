"""Running ``saecore new-plugin`` exactly as the CLI will, before and after it is wired into main.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from saecore.cli import new_plugin_cmd


def new_plugin(*argv: str) -> int:
    """Parse ``argv`` with the command's own parser (as ``saecore new-plugin ...`` does) and run it."""
    parser = argparse.ArgumentParser(prog="saecore")
    commands = parser.add_subparsers(dest="command", required=True)
    new_plugin_cmd.add_parser(commands, "new-plugin")
    return new_plugin_cmd.run(parser.parse_args(["new-plugin", *argv]))


def generate(name: str, kind: str, output: Path) -> Path:
    assert new_plugin(name, "--kind", kind, "--output", str(output)) == 0
    folders = [p for p in output.iterdir() if p.is_dir() and p.name.endswith(name.replace("_", "-"))]
    assert len(folders) == 1, folders
    return folders[0]
