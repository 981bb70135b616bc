"""Layer 11: the ``netkeepalive`` command.

Each subcommand lives in its own module, imported only when it runs, which
provides ``add_arguments(name, parser)`` and ``run(name, args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

__all__ = ["COMMANDS", "build_parser", "main"]

#: subcommand -> (module, one-line help)
COMMANDS = {
    "demo": ("._demo", "watch the kernel detect a silent peer on loopback"),
    "show": ("._retrofit", "list processes' TCP sockets and their keepalive settings"),
    "set": ("._retrofit", "change keepalive settings of a running process's sockets"),
    "cgroup": ("._cgroup", "keepalive policy for every connection of a cgroup"),
    "run": ("._run", "run a Python program with keepalive on all its TCP connections"),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser for every subcommand.

    With *command*, only that subcommand's module is imported (the others
    are listed by name and help text only; ``""`` imports none).
    """
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="netkeepalive",
        description="Decide how fast TCP notices a dead peer.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(command_parser=sub_parser)
        if command is None or command == name:
            importlib.import_module(module, __name__).add_arguments(name, sub_parser)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line *argv* (default ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    # The first non-option argument names the subcommand; import only its module.
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    args, unknown = build_parser(command if command in COMMANDS else "").parse_known_args(argv)
    if unknown:  # refused by the (sub)command they were given to, with its usage
        parser: argparse.ArgumentParser = args.command_parser
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    module = importlib.import_module(COMMANDS[args.command][0], __name__)
    status: int = module.run(args.command, args)
    return status
