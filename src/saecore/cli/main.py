"""Entry point of the ``saecore`` command: dispatch, and errors without tracebacks.

Every failure prints one line, ``saecore: error: ...``, and exits 1; ``--debug`` (or
SAECORE_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence

from saecore.cli import (
    cache_cmd,
    eval_cmd,
    info_cmd,
    new_plugin_cmd,
    plugins_cmd,
    push_cmd,
    releases_cmd,
    train_cmd,
)
from saecore.version import __version__

COMMANDS = {
    "plugins": plugins_cmd,
    "info": info_cmd,
    "train": train_cmd,
    "eval": eval_cmd,
    "cache": cache_cmd,
    "releases": releases_cmd,
    "push": push_cmd,
    "new-plugin": new_plugin_cmd,
}


def build_parser() -> argparse.ArgumentParser:
    # Flags must be spelled out in full (allow_abbrev=False): a prefix is never taken for another flag.
    parser = argparse.ArgumentParser(prog="saecore", description="Train, load and inspect sparse autoencoders.",
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"saecore {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=functools.partial(argparse.ArgumentParser, allow_abbrev=False))
    for name, module in COMMANDS.items():
        module.add_parser(commands, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SAECORE_DEBUG") == "1"
    try:
        command_line = [a for a in argv if a != "--debug"]
        # Commands whose flags come from registered config models parse their own arguments.
        forwarded = COMMANDS.get(command_line[0]) if command_line else None
        if forwarded is not None and hasattr(forwarded, "run_from_argv"):
            return int(forwarded.run_from_argv(command_line[1:]) or 0)
        args = build_parser().parse_args(argv)
        return int(COMMANDS[args.command].run(args) or 0)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("saecore: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"saecore: error: {message}", file=sys.stderr)
        print("saecore: (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
