"""``python -m netkeepalive run``: a program runs as if started directly, with the policy.

Each test starts a real interpreter on a small program in a temporary
directory; the program connects on loopback and prints what it sees
(``sys.argv``, ``__name__``, ``sys.path[0]``...) and the options of its own
socket, read with the standard library's ``getsockopt``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

import netkeepalive as nk

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = textwrap.dedent(
    """
    import json, socket, sys
    import __main__

    TCP = socket.IPPROTO_TCP
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with socket.create_connection(listener.getsockname()) as client:
            options = [
                client.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                client.getsockopt(TCP, socket.TCP_KEEPIDLE),
                client.getsockopt(TCP, socket.TCP_KEEPINTVL),
                client.getsockopt(TCP, socket.TCP_KEEPCNT),
                client.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
            ]
    seen = {
        "argv": sys.argv,
        "name": __name__,
        "path0": sys.path[0],
        "main_is_me": sys.modules["__main__"].__dict__ is globals(),
        "file": __main__.__file__,
        "spec": getattr(__spec__, "name", None),
        "options": options,
    }
    print(json.dumps(seen))
    if len(sys.argv) > 1 and sys.argv[1] == "raise":
        def inner():
            raise LookupError("from the program")
        inner()
    if len(sys.argv) > 1 and sys.argv[1].startswith("exit="):
        sys.exit(sys.argv[1][5:] if not sys.argv[1][5:].isdigit() else int(sys.argv[1][5:]))
    """
)

SETTINGS = ["--idle", "11000", "--interval", "3000", "--probes", "4", "--user-timeout", "23456"]
EXPECTED = [1, 11, 3, 4, 23456]


def python(args: List[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def seen(result: subprocess.CompletedProcess[str]) -> Dict[str, Any]:
    data: Dict[str, Any] = json.loads(result.stdout.splitlines()[0])
    return data


@pytest.fixture
def program(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    path = tmp_path / "scripts" / "probe.py"
    path.write_text(PROGRAM)
    return path


def test_script_runs_as_if_direct(program: Path) -> None:
    cwd = program.parent.parent
    direct = python([str(program), "exit=7", "--idle", "x"], cwd)
    wrapped = python(
        ["-m", "netkeepalive", "run", *SETTINGS, "--", str(program), "exit=7", "--idle", "x"], cwd
    )
    assert (direct.returncode, wrapped.returncode) == (7, 7), wrapped.stderr
    plain, ours = seen(direct), seen(wrapped)
    assert plain["options"][0] == 0  # the program alone does not turn keepalive on
    assert ours.pop("options") == EXPECTED
    plain.pop("options")
    assert ours == plain
    assert ours["argv"] == [str(program), "exit=7", "--idle", "x"]
    assert ours["name"] == "__main__"
    assert ours["path0"] == str(program.parent)
    assert ours["main_is_me"] is True


def test_script_without_separator_and_detect_within(program: Path) -> None:
    result = python(
        ["-m", "netkeepalive", "run", "--detect-within", "30000", str(program)], program.parent
    )
    assert result.returncode == 0, result.stderr
    params = nk.detect_within(30_000)
    options = seen(result)["options"]
    assert options == [
        1,
        params["idle"] // 1000,  # type: ignore[operator]
        params["interval"] // 1000,  # type: ignore[operator]
        params["probes"],
        params["user_timeout"],
    ]
    # What the program's socket holds notices a silent peer within 30 s,
    # idle (keepalive, with the timers' slack) or with data in flight.
    _on, idle_s, interval_s, probes, user_timeout_ms = options
    detection = (idle_s + interval_s * probes) * 1000
    assert detection + detection * 8 / 63 <= 30_000
    assert 0 < user_timeout_ms <= detection


def test_module_runs_as_if_direct(program: Path) -> None:
    package = program.parent.parent / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "probe.py").write_text(PROGRAM)
    cwd = program.parent.parent
    direct = python(["-m", "pkg.probe", "exit=3", "-m", "x"], cwd)
    wrapped = python(
        ["-m", "netkeepalive", "run", *SETTINGS, "-m", "pkg.probe", "exit=3", "-m", "x"], cwd
    )
    assert (direct.returncode, wrapped.returncode) == (3, 3), wrapped.stderr
    plain, ours = seen(direct), seen(wrapped)
    assert ours.pop("options") == EXPECTED
    plain.pop("options")
    assert ours == plain
    assert ours["argv"] == [str(package / "probe.py"), "exit=3", "-m", "x"]
    assert ours["spec"] == "pkg.probe"
    assert ours["path0"] == str(cwd)


def test_package_with_main(tmp_path: Path) -> None:
    package = tmp_path / "app"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(PROGRAM)
    result = python(["-m", "netkeepalive", "run", *SETTINGS, "-m", "app", "--", "y"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert seen(result)["argv"] == [str(package / "__main__.py"), "--", "y"]
    assert seen(result)["options"] == EXPECTED


def test_exception_reported_as_if_direct(program: Path) -> None:
    cwd = program.parent
    direct = python([str(program), "raise"], cwd)
    wrapped = python(["-m", "netkeepalive", "run", *SETTINGS, "--", str(program), "raise"], cwd)
    assert (direct.returncode, wrapped.returncode) == (1, 1)
    assert wrapped.stderr == direct.stderr
    assert wrapped.stderr.startswith("Traceback (most recent call last):\n")
    assert "in inner\n" in wrapped.stderr
    assert wrapped.stderr.rstrip().endswith("LookupError: from the program")
    assert "runpy" not in wrapped.stderr
    assert "netkeepalive" not in wrapped.stderr


def test_sys_exit_with_a_message(program: Path) -> None:
    direct = python([str(program), "exit=bye"], program.parent)
    wrapped = python(["-m", "netkeepalive", "run", "--", str(program), "exit=bye"], program.parent)
    assert (direct.returncode, wrapped.returncode) == (1, 1)
    assert wrapped.stderr == direct.stderr == "bye\n"


def test_argument_errors(program: Path) -> None:
    cwd = program.parent
    bad = python(["-m", "netkeepalive", "run", "--idle", "500", "--", str(program)], cwd)
    assert bad.returncode == 2
    assert "TCP_KEEPIDLE" in bad.stderr
    assert bad.stdout == ""
    clash = python(
        ["-m", "netkeepalive", "run", "--idle", "5000", "--detect-within", "9000", str(program)],
        cwd,
    )
    assert clash.returncode == 2
    assert "--detect-within" in clash.stderr
    nothing = python(["-m", "netkeepalive", "run", "--idle", "5000"], cwd)
    assert nothing.returncode == 2
    assert "give the program to run" in nothing.stderr
    no_module = python(["-m", "netkeepalive", "run", "-m"], cwd)
    assert no_module.returncode == 2
    assert "expected a module name" in no_module.stderr


def test_missing_program(tmp_path: Path) -> None:
    script = python(["-m", "netkeepalive", "run", "--", "missing.py"], tmp_path)
    assert script.returncode == 2
    assert "can't open file" in script.stderr
    assert "missing.py" in script.stderr
    module = python(["-m", "netkeepalive", "run", "-m", "no_such_module_here"], tmp_path)
    assert module.returncode == 1
    assert "No module named no_such_module_here" in module.stderr
    package = tmp_path / "bare"
    package.mkdir()
    (package / "__init__.py").write_text("")
    bare = python(["-m", "netkeepalive", "run", "-m", "bare"], tmp_path)
    assert bare.returncode == 1
    assert "cannot be directly executed" in bare.stderr


def test_help_lists_run(tmp_path: Path) -> None:
    result = python(["-m", "netkeepalive", "--help"], tmp_path)
    assert result.returncode == 0
    assert "run" in result.stdout
    usage = python(["-m", "netkeepalive", "run", "--help"], tmp_path)
    assert usage.returncode == 0
    assert "--detect-within" in usage.stdout
    assert "-m" in usage.stdout


def run_input(args: List[str], cwd: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_relative_script_gets_absolute_file_and_path(program: Path) -> None:
    """A script that changes directory still finds itself, as under python."""
    moving = program.parent / "moving.py"
    moving.write_text(
        "import json, os, sys\n"
        "os.chdir('/')\n"
        "print(json.dumps([__file__, sys.path[0], sys.argv, os.path.exists(__file__)]))\n"
    )
    cwd = program.parent.parent
    for name in ("scripts/moving.py", "./scripts/../scripts/moving.py"):
        direct = python([name, "x"], cwd)
        wrapped = python(["-m", "netkeepalive", "run", "--", name, "x"], cwd)
        assert wrapped.returncode == direct.returncode == 0, wrapped.stderr
        assert json.loads(wrapped.stdout) == json.loads(direct.stdout)
        file, path0, argv, exists = json.loads(wrapped.stdout)
        assert os.path.isabs(file)
        assert os.path.isabs(path0)
        assert exists
        assert argv == [name, "x"]


def test_program_from_standard_input(program: Path) -> None:
    source = PROGRAM.replace('"file": __main__.__file__', '"file": globals().get("__file__")')
    direct = run_input(["-", "exit=5"], program.parent, source)
    wrapped = run_input(
        ["-m", "netkeepalive", "run", *SETTINGS, "--", "-", "exit=5"], program.parent, source
    )
    assert (direct.returncode, wrapped.returncode) == (5, 5), wrapped.stderr
    plain, ours = seen(direct), seen(wrapped)
    assert ours.pop("options") == EXPECTED
    plain.pop("options")
    assert ours == plain
    assert ours["argv"] == ["-", "exit=5"]
    assert ours["path0"] == ""


def test_directory_without_main_as_python_says(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for name in ("empty", "./empty"):
        direct = python([name], tmp_path)
        wrapped = python(["-m", "netkeepalive", "run", "--", name], tmp_path)
        assert direct.returncode == wrapped.returncode == 1
        assert wrapped.stderr == direct.stderr
        assert wrapped.stderr.count("\n") == 1
        assert "can't find '__main__' module" in wrapped.stderr


def test_keyboard_interrupt_as_python_reports_it(tmp_path: Path) -> None:
    (tmp_path / "stop.py").write_text("def f():\n    raise KeyboardInterrupt\n\nf()\n")
    direct = python(["stop.py"], tmp_path)
    wrapped = python(["-m", "netkeepalive", "run", "--", "stop.py"], tmp_path)
    assert direct.returncode == wrapped.returncode == -2  # ended by SIGINT, as python does
    assert wrapped.stderr == direct.stderr
    assert "netkeepalive" not in wrapped.stderr
    assert "runpy" not in wrapped.stderr
    assert wrapped.stderr.rstrip().endswith("KeyboardInterrupt")


def test_enforce_caps_what_the_program_writes(tmp_path: Path) -> None:
    (tmp_path / "own.py").write_text(
        textwrap.dedent(
            """
            import json, socket
            import netkeepalive
            TCP = socket.IPPROTO_TCP
            with socket.create_server(("127.0.0.1", 0)) as listener:
                with socket.create_connection(listener.getsockname()) as client:
                    client.setsockopt(TCP, socket.TCP_KEEPIDLE, 60)
                    client.setsockopt(TCP, socket.TCP_KEEPCNT, 2)
                    client.setsockopt(TCP, socket.TCP_USER_TIMEOUT, 0)
                    print(json.dumps([
                        client.getsockopt(TCP, socket.TCP_KEEPIDLE),
                        client.getsockopt(TCP, socket.TCP_KEEPCNT),
                        client.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
                        netkeepalive.clamped_writes(),
                    ]))
            """
        )
    )
    plain = python(["-m", "netkeepalive", "run", *SETTINGS, "--", "own.py"], tmp_path)
    enforced = python(
        ["-m", "netkeepalive", "run", *SETTINGS, "--enforce", "--", "own.py"], tmp_path
    )
    assert plain.returncode == enforced.returncode == 0, enforced.stderr
    assert json.loads(plain.stdout) == [60, 2, 0, {}]
    assert json.loads(enforced.stdout) == [11, 2, 23456, {"idle": 1, "user_timeout": 1}]


def test_main_module_namespace_as_python(tmp_path: Path) -> None:
    """``__main__`` holds the same names, of the same types, as under python (file and stdin)."""
    source = (
        "import __main__\n"
        "print(sorted((k, type(v).__name__) for k, v in vars(__main__).items()"
        " if k.startswith('__')))\n"
    )
    (tmp_path / "names.py").write_text(source)
    assert (
        python(["-m", "netkeepalive", "run", "--", "names.py"], tmp_path).stdout
        == python(["names.py"], tmp_path).stdout
    )
    assert (
        run_input(["-m", "netkeepalive", "run", "--", "-"], tmp_path, source).stdout
        == run_input(["-"], tmp_path, source).stdout
    )


NAMESPACE = (
    "import sys, __main__\n"
    "def f(x: int) -> None: pass\n"
    "print(sorted((k, type(v).__name__) for k, v in vars(__main__).items()"
    " if k.startswith('__')), sys.argv, sys.path[0], __file__, f.__annotations__)\n"
)


def test_directory_and_archive_with_main_as_python(tmp_path: Path) -> None:
    """``sys.argv[0]`` as given, ``__file__`` and ``sys.path[0]`` absolute, as python sets them."""
    import zipfile

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__main__.py").write_text(NAMESPACE)
    with zipfile.ZipFile(tmp_path / "app.zip", "w") as archive:
        archive.writestr("__main__.py", NAMESPACE)
    for name in ("app", "./app", "app.zip"):
        direct = python([name, "x"], tmp_path)
        wrapped = python(["-m", "netkeepalive", "run", "--", name, "x"], tmp_path)
        assert direct.returncode == wrapped.returncode == 0, wrapped.stderr
        assert wrapped.stdout == direct.stdout
        assert f"['{name}', 'x']" in wrapped.stdout


def test_program_compiled_as_python_compiles_it(tmp_path: Path) -> None:
    """No ``from __future__`` of this package leaks into the program (annotations stay objects)."""
    (tmp_path / "names.py").write_text(NAMESPACE)
    direct = python(["names.py"], tmp_path)
    wrapped = python(["-m", "netkeepalive", "run", "--", "names.py"], tmp_path)
    assert direct.returncode == wrapped.returncode == 0, wrapped.stderr
    assert wrapped.stdout == direct.stdout
    assert "{'x': <class 'int'>, 'return': None}" in wrapped.stdout
    piped = run_input(["-m", "netkeepalive", "run", "--", "-"], tmp_path, NAMESPACE)
    assert piped.stdout.rstrip().endswith("{'x': <class 'int'>, 'return': None}")
