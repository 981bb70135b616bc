"""``netkeepalive cgroup attach|status|detach``: a keepalive policy per cgroup.

See :mod:`netkeepalive.cgroup`.  Exit status: 0 on success; 1 when the
kernel or the system refuses (one line on standard error, nothing left
attached); 2 for argument errors.  ``status PATH`` exits 0 whether or not
a policy is attached; ``detach`` of a cgroup without one exits 0 and says so.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Tuple

from ._cliopts import add_settings_arguments, settings_from_args

__all__ = ["add_arguments", "run"]


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Add ``attach``, ``status`` and ``detach`` to the ``cgroup`` subcommand *parser*."""
    parser.description = (
        "Give every TCP connection of a cgroup v2 (a systemd unit, a container) "
        "SO_KEEPALIVE and the given settings, enforced by the kernel (Linux 5.9+, root)."
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    attach = _action(
        actions,
        "attach",
        "attach (or replace) the policy of a cgroup",
        "Every TCP connection established from now on by a process in PATH "
        "(connections it makes and connections it accepts) gets SO_KEEPALIVE=1 and the "
        "given settings.  Stays attached after this command exits; replaces an earlier "
        "policy of ours on PATH.",
    )
    add_settings_arguments(attach)
    attach.add_argument(
        "--enforce",
        action="store_true",
        help="make the policy a ceiling (Linux 5.3+): an application's setsockopt that turns "
        "keepalive off, or asks for longer times, more probes or a user timeout of 0 or "
        "longer, gets the policy's value instead",
    )
    attach.add_argument("--json", action="store_true", help="print the policy as JSON")
    status = _action(
        actions,
        "status",
        "show the policy attached to a cgroup (or to every cgroup)",
        "The policy attached to PATH, read back from the kernel; without "
        "PATH, every cgroup that has one.",
        path_nargs="?",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    _action(
        actions,
        "detach",
        "remove our policy from a cgroup (other programs stay)",
        "Remove this project's program from PATH; other sock_ops programs "
        "stay attached.  Connections established earlier keep their values.",
    )


_PATH_HELP = (
    "cgroup v2 directory: relative to the cgroup2 mount (system.slice/nginx.service), "
    "as in /proc/PID/cgroup, or a full path"
)


def _action(
    actions: Any, name: str, summary: str, description: str, path_nargs: Optional[str] = None
) -> argparse.ArgumentParser:
    """The parser of ``cgroup NAME``: its PATH argument, and itself for :func:`run`."""
    parser: argparse.ArgumentParser = actions.add_parser(
        name, help=summary, description=description
    )
    parser.add_argument("path", metavar="PATH", nargs=path_nargs, help=_PATH_HELP)
    parser.set_defaults(cgroup_parser=parser)
    return parser


def _print(entries: List[Tuple[str, Any]], as_json: bool) -> None:
    if as_json:
        document = [
            {
                "cgroup": name,
                "keepalive": None if policy is None else policy.as_json(),
                "enforce": None if policy is None else policy.enforcement_json(),
            }
            for name, policy in entries
        ]
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    for name, policy in entries:
        print(f"{name}: {'no policy' if policy is None else policy.describe()}")


def run(name: str, args: argparse.Namespace) -> int:
    """Run ``cgroup ACTION`` with parsed *args*; return the exit status."""
    from . import cgroup

    parser: argparse.ArgumentParser = args.cgroup_parser
    action: str = args.action
    settings: Dict[str, int] = {}
    if action == "attach":
        settings = settings_from_args(args, parser)
    try:
        if action == "attach":
            policy = cgroup.attach(args.path, enforce=args.enforce, **settings)
            _, shown = cgroup.resolve(args.path)
            _print([(shown, policy)], args.json)
        elif action == "status":
            entries: List[Tuple[str, Optional[cgroup.Policy]]]
            if args.path is None:
                entries = list(cgroup.policies())
                if not entries and not args.json:
                    print("no cgroup has a netkeepalive policy")
            else:
                entries = [(cgroup.resolve(args.path)[1], cgroup.status(args.path))]
            _print(entries, args.json)
        else:
            shown = cgroup.resolve(args.path)[1]
            removed = cgroup.detach(args.path)
            print(f"{shown}: {'policy removed' if removed else 'had no policy'}")
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    except OSError as exc:
        text = exc.strerror if isinstance(exc, cgroup.CgroupError) else str(exc)
        print(f"netkeepalive {name} {action}: {text}", file=sys.stderr)
        return 1
    return 0
