"""One cell of the dead-peer matrix: a client under a method, silenced (``dead_peer.py``)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import selectors
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from _matrix_net import SERVER_ADDR, netkeepalive_env

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_SCRIPT = os.path.join(HERE, "_matrix_clients.py")

#: client -> (server kind, Python module it needs or None for a program)
CLIENTS: Dict[str, Tuple[str, Optional[str]]] = {
    "socket": ("hold", "socket"),
    "requests": ("http", "requests"),
    "httpx": ("http", "httpx"),
    "aiohttp": ("http", "aiohttp"),
    "redis": ("redis", "redis"),
    "amqp": ("amqp", "amqp"),
    "psycopg": ("postgres", "psycopg"),
    "node": ("hold", None),
    "curl": ("http", None),
}
NETKEEPALIVE = [sys.executable, "-m", "netkeepalive"]


def skipped(reason: str) -> Dict[str, Any]:
    return {"status": "skipped", "reason": reason, "detected_ms": None, "options": None}


def attach(lab: Any, method: str, budget: int) -> Optional[str]:
    """Attach the cgroup policy of *method*; the reason when it cannot be, else None."""
    path = lab.make_cgroup()
    cmd = [*NETKEEPALIVE, "cgroup", "attach", path, "--detect-within", str(budget)]
    if method == "cgroup-enforce":
        cmd.insert(-2, "--enforce")
    done = subprocess.run(cmd, capture_output=True, text=True, env=netkeepalive_env(), timeout=60)
    if done.returncode == 0:
        return None
    return f"cgroup attach failed: {done.stderr.strip()[-200:]}"


def _unreachable(client: str, method: str) -> Optional[str]:
    python = CLIENTS[client][1] is not None
    if not python and method in ("api", "run", "run-enforce"):
        return "not a Python program: the library API and run cannot reach it"
    return None


def _missing(client: str) -> Optional[str]:
    module = CLIENTS[client][1]
    if module is not None:
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed"
        return None
    if shutil.which(client) is None:
        return f"{client} is not installed"
    return None


def _command(client: str, method: str, scenario: str, port: int, budget: int) -> List[str]:
    if client == "node":
        from _matrix_clients import NODE_CLIENT

        return ["node", "-e", NODE_CLIENT, SERVER_ADDR, str(port), scenario]
    if client == "curl":
        from _matrix_clients import curl_command

        return curl_command(SERVER_ADDR, port, scenario)
    args = [CLIENT_SCRIPT, client, scenario, SERVER_ADDR, str(port)]
    if method == "api":
        args += ["--api", str(budget)]
    if method.startswith("run"):
        enforce = ["--enforce"] if method == "run-enforce" else []
        return [*NETKEEPALIVE, "run", *enforce, "--detect-within", str(budget), "--", *args]
    return [sys.executable, *args]


def _socket_options(pid: int, port: int) -> Optional[Dict[str, Any]]:
    """The client's connection to the server as ``netkeepalive show PID --json`` reads it."""
    done = subprocess.run(
        [*NETKEEPALIVE, "show", str(pid), "--json"],
        capture_output=True,
        text=True,
        env=netkeepalive_env(),
        timeout=30,
    )
    if done.returncode != 0:
        return None
    for sock in json.loads(done.stdout).get("sockets", []):
        if sock.get("remote") == f"{SERVER_ADDR}:{port}" and sock.get("state") == "ESTABLISHED":
            return sock.get("keepalive")  # type: ignore[no-any-return]
    return None


class _Lines:
    """Lines of a child's stdout, with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.buffer = b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        self.eof = False

    def next(self, deadline: float) -> Optional[str]:
        """The next line; ``""`` at end of output, None at the deadline."""
        while b"\n" not in self.buffer:
            if self.eof:
                return ""
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            self.eof = not chunk
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode(errors="replace")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        proc.stdin = None  # communicate() would flush it
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        return ""
    return (err or b"").decode(errors="replace").strip()


def run_cell(lab: Any, client: str, method: str, scenario: str, args: Any) -> Dict[str, Any]:
    reason = _missing(client) or _unreachable(client, method)
    if reason is None and method.startswith("cgroup"):
        reason = lab.attach_error
    if reason is not None:
        return skipped(reason)
    kind = CLIENTS[client][0]
    port = lab.server(kind)
    if port is None:
        return skipped(f"no {kind} server: {lab.notes.get(kind)}")
    stub = kind in lab.stubs
    cmd = lab.exec_prefix(lab.client_ns) + _command(client, method, scenario, port, args.budget)
    procs = os.path.join(lab.cgroup, "cgroup.procs") if method.startswith("cgroup") else None

    def enter_cgroup() -> None:
        if procs is not None:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))

    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=netkeepalive_env(),
        start_new_session=True,
        preexec_fn=enter_cgroup,
    )
    try:
        return _observe(lab, proc, client, method, scenario, port, args, stub)
    finally:
        stderr = _stop(proc)
        lab.unsilence()
        if stderr and os.environ.get("DEAD_PEER_DEBUG"):
            print(stderr, file=sys.stderr)


def _ready(proc: subprocess.Popen[bytes], lines: _Lines, client: str, port: int) -> Optional[str]:
    """Wait until the client is connected; the output it gave instead, or None."""
    deadline = time.monotonic() + 30
    if client == "curl":  # no output: wait for its connection
        while time.monotonic() < deadline and proc.poll() is None:
            if _socket_options(proc.pid, port) is not None:
                return None
            time.sleep(0.1)
        return "curl did not connect"
    line = lines.next(deadline)
    return None if line == "ready" else (line or "no output")


def _observe(
    lab: Any,
    proc: subprocess.Popen[bytes],
    client: str,
    method: str,
    scenario: str,
    port: int,
    args: Any,
    stub: bool,
) -> Dict[str, Any]:
    lines = _Lines(proc)
    problem = _ready(proc, lines, client, port)
    if problem is not None:
        err = _stop(proc)
        return {
            "status": "error",
            "reason": f"{problem}; {err[-300:]}",
            "detected_ms": None,
            "options": None,
        }
    time.sleep(0.5)  # the last request reaches the server and is acknowledged
    if method == "set":
        done = subprocess.run(
            [*NETKEEPALIVE, "set", str(proc.pid), "--detect-within", str(args.budget)],
            capture_output=True,
            text=True,
            env=netkeepalive_env(),
            timeout=30,
        )
        if done.returncode != 0:
            return {
                "status": "error",
                "reason": "set failed: " + done.stderr[-300:],
                "detected_ms": None,
                "options": None,
            }
    options = _socket_options(proc.pid, port)
    lab.silence()
    start = time.monotonic()
    if scenario == "inflight":
        assert proc.stdin is not None
        if client == "curl":  # the rest of its upload, then it waits for the answer
            proc.stdin.write(b"x" * 100)
            proc.stdin.close()
        else:
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
    deadline = start + args.limit / 1000
    detected: Optional[int] = None
    error = None
    while True:
        line = lines.next(deadline)
        if line is None:
            break
        if line.startswith("returned"):  # the server answered: the silence failed
            return {
                "status": "error",
                "reason": "the client's call returned although its peer was silenced",
                "detected_ms": None,
                "options": options,
            }
        if line == "" or line.startswith("error"):
            if line == "":  # it exited (curl's way of failing)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(max(0.1, deadline - time.monotonic()))
            detected = round((time.monotonic() - start) * 1000)
            error = line or f"exit status {proc.returncode}"
            break
    result: Dict[str, Any] = {
        "status": "run",
        "detected_ms": detected,
        "options": options,
        "error": error,
    }
    if stub:
        result["stub"] = True
    if error is not None and client == "curl":
        result["error"] = (_stop(proc).splitlines() or [error])[-1]
    return result
