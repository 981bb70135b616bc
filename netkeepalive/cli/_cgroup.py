"""``netkeepalive cgroup attach|status|detach``: a keepalive policy per cgroup.

See :mod:`netkeepalive.cgroup`.  Exit status: 0 on success; 1 when the
kernel or the system refuses (one line on standard error, nothing left
attached), or when the report cannot be written (one line on standard
error; a change made stays, and the line says so); 141 when standard
output is a pipe that was closed; 2 for argument errors, among them a
path that is the root cgroup without being written ``/``.  ``status PATH``
exits 0 whether or not a policy is attached; ``detach`` of a cgroup
without one exits 0 and says so.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._options import add_settings_arguments, settings_from_args
from ._report import (
    complain,
    describe_policy,
    enforcement_json,
    exit_status,
    policy_json,
    printable,
    write,
)

__all__ = ["add_arguments", "report", "run"]


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
    parser.set_defaults(cgroup_parser=parser, command_parser=parser)
    return parser


#: Appended to ``attach``'s line for the root cgroup.
WHOLE_MACHINE = "the root cgroup: this policy covers every process on the machine"


def report(
    entries: Sequence[Tuple[str, Optional[Any]]],
    as_json: bool,
    foreign: Optional[Dict[str, List[Tuple[int, str]]]] = None,
    attaching: bool = False,
) -> str:
    """The text ``attach`` and ``status`` print for ``(cgroup, policy)`` *entries*.

    *foreign* lists, per cgroup, the sock_ops programs there that are not
    ours, ``(id, name)``; with *attaching*, the root cgroup's line says the
    policy covers every process on the machine.
    """
    foreign = foreign or {}
    if as_json:
        document = []
        for name, policy in entries:
            entry: Dict[str, Any] = {
                "cgroup": name,
                "keepalive": None if policy is None else policy_json(policy),
                "enforce": None if policy is None else enforcement_json(policy),
            }
            if policy is not None and not policy.applied:
                entry["applied"] = False
            if foreign.get(name):
                entry["foreign_programs"] = [{"id": i, "name": n} for i, n in foreign[name]]
            if attaching and name == "/":
                entry["whole_machine"] = True
            document.append(entry)
        return json.dumps(document, indent=2) + "\n"
    lines = []
    for raw, policy in entries:
        name = printable(raw)
        line = f"{name}: {'no policy' if policy is None else describe_policy(policy)}"
        if attaching and raw == "/":
            line += f" ({WHOLE_MACHINE})"
        lines.append(line)
        others = foreign.get(raw)
        if others:
            shown = ", ".join(f"id {i} named {n!r}" for i, n in others)  # repr: one line
            lines.append(f"{name}: also attached, not ours (left alone): {shown}")
    return "".join(line + "\n" for line in lines)


def run(name: str, args: argparse.Namespace) -> int:
    """Run ``cgroup ACTION`` with parsed *args*; return the exit status."""
    from .. import cgroup

    parser: argparse.ArgumentParser = args.cgroup_parser
    action: str = args.action
    command = f"{name} {action}"
    settings: Dict[str, int] = {}
    if action == "attach":
        settings = settings_from_args(args, parser)
    change: Optional[str] = None
    try:
        if action == "attach":
            _, shown = cgroup.resolve(args.path)
            policy = cgroup.attach(args.path, enforce=args.enforce, **settings)
            change = (
                f"the policy is attached to cgroup {shown} all the same; only the report failed"
            )
            text = report([(shown, policy)], args.json, attaching=True)
        elif action == "status":
            entries: List[Tuple[str, Optional[cgroup.Policy]]]
            foreign: Dict[str, List[Tuple[int, str]]] = {}
            if args.path is None:
                entries = list(cgroup.policies())
            else:
                shown = cgroup.resolve(args.path)[1]
                entries = [(shown, cgroup.status(args.path))]
                foreign[shown] = cgroup.foreign_programs(args.path)
            text = report(entries, args.json, foreign)
            if not entries and not args.json:
                text = "no cgroup has a netkeepalive policy\n"
        else:
            shown = cgroup.resolve(args.path)[1]
            removed = cgroup.detach(args.path)
            what = "policy removed" if removed else "had no policy"
            if removed:
                change = f"the policy is detached from cgroup {shown} all the same; "
                change += "only the report failed"
            text = f"{printable(shown)}: {what}\n"
    except (TypeError, ValueError) as exc:
        complain(f"netkeepalive {command}: {exc}")
        return 2
    except OSError as exc:
        why = exc.strerror if isinstance(exc, cgroup.CgroupError) else str(exc)
        complain(f"netkeepalive {command}: {why}")
        return 1
    return exit_status(command, write(text), change=change)
