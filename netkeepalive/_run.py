"""``netkeepalive run``: a Python program with :func:`netkeepalive.install` in force.

``netkeepalive run [settings] -- script.py [args]`` or
``netkeepalive run [settings] -m module [args]``, like ``python -m cProfile``:
the policy is installed, then the program runs in this process through
:mod:`runpy` with ``sys.argv``, ``sys.path[0]`` and ``__main__`` as
``python script.py`` / ``python -m module`` would set them.  Its exit status
is the program's; an uncaught exception is reported by ``sys.excepthook``
without this command's own frames, and the status is 1.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from types import TracebackType
from typing import Callable, List, Optional

from ._cliopts import add_settings_arguments, settings_from_args

__all__ = ["add_arguments", "run"]

_USAGE = (
    "netkeepalive run [--idle MS] [--interval MS] [--probes N] [--user-timeout MS] "
    "[--detect-within MS] (-- script.py | -m module) [args ...]"
)


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Add ``run``'s arguments to *parser* (``name`` is ``"run"``)."""
    parser.usage = _USAGE
    parser.set_defaults(run_parser=parser)
    add_settings_arguments(parser)
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        metavar="module [args]",
        help="run library module as a script, like python -m (everything after it is its own)",
    )
    parser.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        metavar="script.py [args]",
        help="the script and its arguments, best after --",
    )


def _program_frames(tb: Optional[TracebackType]) -> Optional[TracebackType]:
    """*tb* from the program's first frame on (this module's and runpy's dropped)."""
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in (__name__, "runpy"):
        tb = tb.tb_next
    return tb


def _execute(program: Callable[[], object]) -> int:
    """Run *program* as the interpreter runs ``__main__``; return its status.

    ``SystemExit`` and ``KeyboardInterrupt`` propagate, as they would out of
    the program; any other exception goes to ``sys.excepthook`` and gives 1.
    """
    try:
        program()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        tb = _program_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def _set_path0(entry: Optional[str]) -> None:
    """Make ``sys.path[0]`` *entry* (``None``: drop it), as the interpreter's own.

    Nothing changes under ``-P``/``PYTHONSAFEPATH``, where the interpreter
    puts no such entry first.
    """
    if getattr(sys.flags, "safe_path", False) or not sys.path:
        return
    if entry is None:
        del sys.path[0]
    else:
        sys.path[0] = entry


def _run_module(parser: argparse.ArgumentParser, module: List[str]) -> int:
    import importlib.util

    if not module or not module[0]:
        parser.error("argument -m: expected a module name")
    name, rest = module[0], module[1:]
    _set_path0(os.getcwd())  # python -m puts the working directory first
    try:
        spec = importlib.util.find_spec(name)
        package = spec is not None and spec.submodule_search_locations is not None
        if package and importlib.util.find_spec(name + ".__main__") is None:
            print(
                f"netkeepalive run: No module named {name}.__main__; "
                f"{name!r} is a package and cannot be directly executed",
                file=sys.stderr,
            )
            return 1
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        print(f"netkeepalive run: No module named {name}", file=sys.stderr)
        return 1
    sys.argv = [name, *rest]  # runpy puts the module's file in sys.argv[0]
    return _execute(lambda: runpy.run_module(name, run_name="__main__", alter_sys=True))


def _run_script(parser: argparse.ArgumentParser, program: List[str]) -> int:
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        parser.error("give the program to run: -- script.py [args] or -m module [args]")
    script, rest = program[0], program[1:]
    try:
        with open(script, "rb"):
            pass
    except IsADirectoryError:
        pass  # a directory with __main__.py, as python runs it
    except OSError as exc:
        path = os.path.abspath(script)
        print(
            f"netkeepalive run: can't open file {path!r}: [Errno {exc.errno}] {exc.strerror}",
            file=sys.stderr,
        )
        return 2
    import zipfile

    if os.path.isdir(script) or zipfile.is_zipfile(script):
        _set_path0(None)  # runpy puts the directory or archive first
    else:
        _set_path0(os.path.dirname(os.path.realpath(script)))
    sys.argv = [script, *rest]
    return _execute(lambda: runpy.run_path(script, run_name="__main__"))


def run(name: str, args: argparse.Namespace) -> int:
    """Run ``netkeepalive run`` with parsed *args*; return the program's exit status."""
    parser: argparse.ArgumentParser = args.run_parser
    settings = settings_from_args(args, parser)
    if args.module is None and not args.program:
        parser.error("give the program to run: -- script.py [args] or -m module [args]")
    from ._install import install

    install(
        idle=settings.get("idle"),
        interval=settings.get("interval"),
        probes=settings.get("probes"),
        user_timeout=settings.get("user_timeout"),
    )
    if args.module is not None:
        # Arguments after "-m module" are the module's, "--" included.
        return _run_module(parser, [*args.module, *args.program])
    return _run_script(parser, args.program)
