"""``netkeepalive run``: a Python program with :func:`netkeepalive.install` in force.

``netkeepalive run [settings] -- script.py [args]`` or
``netkeepalive run [settings] -m module [args]``, like ``python -m cProfile``:
the policy is installed, then the program runs in this process with
``sys.argv``, ``sys.path[0]``, ``__file__`` and ``__main__`` as ``python
script.py`` (a file, a directory or archive with ``__main__``, or ``-``
for standard input) or ``python -m module`` would set them.  Its exit
status is the program's; an uncaught exception is reported by
``sys.excepthook`` without this command's own frames, and the status is 1
(an uncaught ``KeyboardInterrupt`` ends the process by ``SIGINT``).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from types import CodeType, ModuleType, TracebackType
from typing import Callable, List, Optional

from ._options import add_settings_arguments, settings_from_args

__all__ = ["add_arguments", "run"]

_USAGE = (
    "netkeepalive run [--idle MS] [--interval MS] [--probes N] [--user-timeout MS] "
    "[--detect-within MS] [--enforce] (-- script.py | -m module) [args ...]"
)


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """Add ``run``'s arguments to *parser* (``name`` is ``"run"``)."""
    parser.usage = _USAGE
    parser.set_defaults(run_parser=parser)
    add_settings_arguments(parser)
    parser.add_argument(
        "--enforce",
        action="store_true",
        help="the settings are a ceiling: longer times, more probes, keepalive off or no "
        "user timeout written by the program are replaced by them (install(enforce=True))",
    )
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
    the program (the interpreter then ends by ``SIGINT`` for the latter, as
    for ``python script.py``); any other exception goes to
    ``sys.excepthook`` and gives 1.  Neither traceback shows this command's
    frames.
    """
    try:
        program()
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        _report_from(_program_frames(exc.__traceback__))
        raise
    except BaseException as exc:
        tb = _program_frames(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def _report_from(start: Optional[TracebackType]) -> None:
    """Have the next ``sys.excepthook`` call print the traceback from *start* on.

    The interpreter reports an uncaught exception after it has passed
    through every frame up to the top, this command's included; those
    frames come before *start* in the chain and are left out.
    """
    hook = sys.excepthook

    def program_only(kind: type, value: BaseException, tb: Optional[TracebackType]) -> None:
        sys.excepthook = hook
        first = tb
        while first is not None and first is not start:
            first = first.tb_next
        if first is not None:
            tb = first
            value = value.with_traceback(tb)
        hook(kind, value, tb)

    sys.excepthook = program_only


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


def _absolute(path: str) -> str:
    """*path* made absolute as the interpreter does (joined, not normalised)."""
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _as_main(main: ModuleType, body: Callable[[], object]) -> Callable[[], None]:
    """*body*, run with *main* as ``sys.modules["__main__"]``."""

    def program() -> None:
        saved = sys.modules["__main__"]
        sys.modules["__main__"] = main
        try:
            body()
        finally:
            sys.modules["__main__"] = saved

    return program


def _new_main(**names: object) -> ModuleType:
    """A fresh ``__main__`` module, with the names the interpreter gives it."""
    import builtins

    main = ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __annotations__={}, **names)
    return main


def _exec_main(filename: str, read: Callable[[], object], loader: object) -> int:
    """Run the code *read* returns (source or a code object) as ``__main__``.

    As the interpreter does for ``python script.py`` and ``python -``:
    ``__file__`` is *filename*, ``__spec__`` is ``None``.  The code is
    compiled without this module's ``__future__`` imports.
    """
    main = _new_main(__file__=filename, __loader__=loader, __cached__=None)

    def body() -> None:
        code = read()
        if not isinstance(code, CodeType):
            code = compile(code, filename, "exec", dont_inherit=True)  # type: ignore[call-overload]
        exec(code, main.__dict__)

    return _execute(_as_main(main, body))


def _read_file(path: str) -> object:
    """The source or, for a compiled file, the code object of the script *path*."""
    import io
    import pkgutil

    with io.open_code(path) as file:
        code = pkgutil.read_code(file)
    if code is not None:
        return code
    with io.open_code(path) as file:
        return file.read()


def _run_script(parser: argparse.ArgumentParser, program: List[str]) -> int:
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        parser.error("give the program to run: -- script.py [args] or -m module [args]")
    script, rest = program[0], program[1:]
    if script == "-":
        _set_path0("")
        sys.argv = ["-", *rest]
        from importlib.machinery import BuiltinImporter

        return _exec_main("<stdin>", sys.stdin.buffer.read, BuiltinImporter)
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

    path = _absolute(script)  # __file__ and the traceback, as python shows them
    if os.path.isdir(script) or zipfile.is_zipfile(script):
        # As the interpreter does: the directory or archive first on the
        # path, then its __main__ module run in a fresh __main__, or
        # "python: can't find '__main__' module in '...'" and status 1.
        _set_path0(path)
        sys.argv = [script, *rest]
        run_main = getattr(runpy, "_run_module_as_main", None)
        if run_main is None:  # pragma: no cover - every CPython since 2.x has it
            return _execute(lambda: runpy.run_path(path, run_name="__main__"))
        return _execute(_as_main(_new_main(), lambda: run_main("__main__", alter_argv=False)))
    _set_path0(os.path.dirname(os.path.realpath(script)))
    sys.argv = [script, *rest]
    from importlib.machinery import SourceFileLoader

    return _exec_main(path, lambda: _read_file(path), SourceFileLoader("__main__", path))


def run(name: str, args: argparse.Namespace) -> int:
    """Run ``netkeepalive run`` with parsed *args*; return the program's exit status."""
    parser: argparse.ArgumentParser = args.run_parser
    settings = settings_from_args(args, parser)
    if args.module is None and not args.program:
        parser.error("give the program to run: -- script.py [args] or -m module [args]")
    from .._install import install

    install(
        idle=settings.get("idle"),
        interval=settings.get("interval"),
        probes=settings.get("probes"),
        user_timeout=settings.get("user_timeout"),
        enforce=args.enforce,
    )
    if args.module is not None:
        # Arguments after "-m module" are the module's, "--" included.
        return _run_module(parser, [*args.module, *args.program])
    return _run_script(parser, args.program)
