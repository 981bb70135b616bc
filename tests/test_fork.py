"""A process forked while another thread makes the first call still works.

The first call loads the option tables, builds the backend and loads the C
library (``find_library`` may start ``ldconfig``), each under a lock: tens
of milliseconds.  A thread that forks meanwhile must give a child whose own
first call completes, with the values read back by the standard library.

Each trial runs in a fresh interpreter, so that its first call is really
the first; a child that does not finish within ``CHILD_TIMEOUT`` prints
where it is stuck and exits, which fails the test instead of hanging the
suite (the trial kills it if it does not).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import threading
import warnings
from typing import List, Tuple

import pytest

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="needs os.fork"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel"),
]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Fork delays after the thread's first call starts, in ms: 0 to 20, one trial each.
DELAYS = [float(ms) for ms in range(21)]
#: Trials run at once (each is mostly waiting on imports and ldconfig).
PARALLEL = 3
#: Seconds a child may take for its own first call before it counts as hung.
CHILD_TIMEOUT = 5.0

_TRIAL = r"""
import faulthandler, os, signal, socket, sys, threading, time

delay, child_timeout = float(sys.argv[1]) / 1000, float(sys.argv[2])
# This process ends by SIGALRM if it hangs itself (a child does not inherit it).
signal.alarm(int(2 * child_timeout) + 10)
import netkeepalive

TCP = socket.IPPROTO_TCP


def read_back(sock):
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(TCP, socket.TCP_KEEPCNT),
    )


first, mine = socket.socket(), socket.socket()
settings = {"idle": 2000, "interval": 1000, "probes": 3}
thread = threading.Thread(target=netkeepalive.configure, args=(first,), kwargs=settings)
thread.start()
time.sleep(delay)
pid = os.fork()
if pid == 0:  # the child: only this thread exists here
    # A hang prints where it is stuck and ends the child (exit 1).
    faulthandler.dump_traceback_later(child_timeout, exit=True)
    try:
        netkeepalive.configure(mine, idle=3000, interval=2000, probes=4)
        os._exit(0 if read_back(mine) == (1, 3, 2, 4) else 2)
    except BaseException:
        os._exit(3)
status = None
try:
    thread.join()
    assert read_back(first) == (1, 2, 1, 3), read_back(first)
    deadline = time.monotonic() + child_timeout + 5
    while status is None and time.monotonic() < deadline:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = code
        else:
            time.sleep(0.002)
finally:
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
if status is None:
    sys.exit("the child did not end")
print("child", "exit", os.WEXITSTATUS(status) if os.WIFEXITED(status) else status)
sys.exit(0 if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else 1)
"""


def _start(delay_ms: float) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="ignore::DeprecationWarning")
    return subprocess.Popen(
        [sys.executable, "-c", _TRIAL, str(delay_ms), str(CHILD_TIMEOUT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_fork_during_first_call_gives_a_working_child() -> None:
    """Fork 0 to 20 ms into another thread's first call; the child makes its own.

    Trials stop at the first failure, so a hang costs one ``CHILD_TIMEOUT``.
    """
    waiting = list(DELAYS)
    running: List[Tuple[float, subprocess.Popen[str]]] = []
    failures: List[str] = []
    try:
        while waiting or running:
            while waiting and not failures and len(running) < PARALLEL:
                delay_ms = waiting.pop(0)
                running.append((delay_ms, _start(delay_ms)))
            if failures and not running:
                break
            delay_ms, trial = running.pop(0)
            try:
                output, _ = trial.communicate(timeout=2 * CHILD_TIMEOUT + 30)
            except subprocess.TimeoutExpired:
                trial.kill()
                output, _ = trial.communicate()
            if trial.returncode != 0:
                failures.append(f"fork at {delay_ms} ms: exit {trial.returncode}: {output.strip()}")
    finally:
        for _delay, trial in running:
            trial.kill()
            trial.communicate()
    assert failures == [], "\n".join(failures)


@pytest.mark.parametrize(
    "module", ["netkeepalive._backends", "netkeepalive._libc", "netkeepalive._pools"]
)
def test_fork_waits_for_a_set_up_lock_held_by_another_thread(module: str) -> None:
    """Each one-time set-up lock: held by a thread when another forks.

    The fork must wait for it, so the child (whose only thread is the one
    that forked) can take the lock instead of waiting forever.
    """
    lock = importlib.import_module(module)._lock
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        # The fork blocks until the lock is free: let the holder finish soon.
        threading.Timer(0.1, release.set).start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: exit 0 only if it gets the lock
            code = 1
            try:
                code = 0 if lock.acquire(timeout=CHILD_TIMEOUT) else 1
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join(10)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 0, "the child found the lock held by a thread it lacks"
