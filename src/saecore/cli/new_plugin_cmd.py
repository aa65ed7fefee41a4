"""``saecore new-plugin NAME --kind architecture|source [--output DIR]``: start a plugin package.

The generated package installs, registers through its entry point, and passes its own
tests (which run saecore's conformance kit) before a line of it is changed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from saecore.plugin_template import KINDS, generate_plugin, plugin_names


def add_parser(commands: Any, name: str) -> None:
    parser = commands.add_parser(name, help="create a new plugin package (architecture or activation source)")
    parser.add_argument("name", metavar="NAME", help="the name it registers, e.g. my_relu (lowercase, digits, _)")
    parser.add_argument("--kind", required=True, choices=KINDS, help="what the plugin provides")
    parser.add_argument("--output", default=".", metavar="DIR", help="folder to create the package in (default: .)")


def run(args: argparse.Namespace) -> int:
    names = plugin_names(args.name, args.kind)
    folder = generate_plugin(args.name, args.kind, Path(args.output))
    if names.kind == "architecture":
        try_it = f"saecore train --arch {names.name}"
    else:
        try_it = f"saecore train --arch standard --source {names.name}"
    print(f"created {folder} ({names.kind} {names.name!r}, distribution {names.distribution}, "
          f"import {names.module}, entry point {names.entry_point})")
    print("next:")
    print(f"  pip install -e {folder}")
    print("  saecore plugins")
    print(f"  python -m pytest {folder / 'tests'}")
    print(f"  {try_it}")
    return 0
