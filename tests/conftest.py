"""Shared fixtures: real TCP connections on loopback."""

from __future__ import annotations

import ctypes
import dataclasses
import os
import socket
import sys
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Dict, FrozenSet, NamedTuple, Optional

import pytest
from helpers import fakelib
from hypothesis import HealthCheck, settings

import netkeepalive._backends
import netkeepalive._libc
from netkeepalive._backends.base import Backend

if TYPE_CHECKING:
    from test_retrofit import Child


class Simulation(NamedTuple):
    """What :func:`simulate` built: the fake kernel, the fake library, the backend."""

    kernel: fakelib.Kernel
    lib: Any
    backend: Backend


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP socket listening on 127.0.0.1 (an ephemeral port)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv


@pytest.fixture
def tcp_pair(listener: socket.socket) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, server-side) ends of one established loopback connection."""
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


@pytest.fixture
def client(tcp_pair: tuple[socket.socket, socket.socket]) -> socket.socket:
    """The client end of an established loopback connection."""
    return tcp_pair[0]


@pytest.fixture
def fresh_backend() -> Iterator[None]:
    """Forget the loaded C library and backend before and after a test."""
    netkeepalive._backends.reset()
    netkeepalive._libc.reset()
    yield
    netkeepalive._backends.reset()
    netkeepalive._libc.reset()


@pytest.fixture
def simulate(mocker: Any) -> Iterator[Callable[..., Simulation]]:
    """Build the backend another system would get, around a fake C library.

    ``simulate("sunos5", release="5.11", version="omnios-r151046")`` patches
    ``sys.platform`` and ``os.uname`` (``build=`` patches
    ``sys.getwindowsversion``; ``sysctls=`` is what ``sysctlbyname``
    answers), lets netkeepalive detect the platform and
    installs a backend calling a :class:`fakelib.FakeLibc` (a
    :class:`fakelib.FakeWs2` on ``win32``) whose kernel knows every option
    of the detected table and refuses what that system's kernel refuses
    (``tests/data/kernel-rules.tsv``, see :func:`fakelib.real_kernel`).
    """

    def make(
        platform: str,
        *,
        release: str = "",
        version: str = "",
        machine: str = "x86_64",
        build: Optional[int] = None,
        boolean_keepalive: bool = False,
        lib: Any = None,
        sysctls: Optional[Dict[str, int]] = None,
    ) -> Simulation:
        mocker.patch.object(sys, "platform", platform)
        uname = os.uname_result((platform, "host", release, version, machine))
        mocker.patch("os.uname", return_value=uname)
        if build is not None:
            info = types.SimpleNamespace(major=10, minor=0, build=build)
            mocker.patch.object(sys, "getwindowsversion", create=True, return_value=info)
        kernel = fakelib.Kernel(sysctls=dict(sysctls or {}))
        if lib is None:
            win = platform == "win32"
            lib = fakelib.FakeWs2(kernel, boolean_keepalive) if win else fakelib.FakeLibc(kernel)
        # The kernel's version number (sysctlbyname) comes from the same library.
        mocker.patch("netkeepalive._sysctl._library", return_value=lib)
        backend = netkeepalive._backends.use(None, lib)
        kernel.known = fakelib.known_options(backend.table)
        fakelib.real_kernel(kernel, backend.table.name)
        return Simulation(kernel, lib, backend)

    netkeepalive._backends.reset()
    yield make
    netkeepalive._backends.reset()
    netkeepalive._libc.reset()


class _RefusingLib:
    """The real C library, except that one (level, option) is refused with *err*.

    Stands in for kernel refusals that cannot be provoked with a valid value
    on Linux; both the public API's fast path and its error path see it.
    """

    def __init__(self, level: int, option: int, err: int, when: Callable[[int], bool]) -> None:
        self.real = netkeepalive._libc.libc()
        self.refused = (level, option)
        self.err = err
        self.when = when

    def setsockopt(self, fd: int, level: int, option: int, value: Any, length: int) -> int:
        if (level, option) == self.refused and self.when(fd):
            ctypes.set_errno(self.err)
            return -1
        result: int = self.real.setsockopt(fd, level, option, value, length)
        return result

    def getsockopt(self, *args: Any) -> int:
        result: int = self.real.getsockopt(*args)
        return result


@pytest.fixture
def refuse_option(fresh_backend: None) -> Callable[..., None]:
    """``refuse_option(level, option, errno, when=None)``: make setsockopt fail.

    *when*, if given, is called with the descriptor and says whether to refuse.
    """

    def install(
        level: int, option: int, err: int, when: Optional[Callable[[int], bool]] = None
    ) -> None:
        lib = _RefusingLib(level, option, err, when or (lambda fd: True))
        netkeepalive._backends.use(None, lib)

    return install


# -- Hypothesis (tests/test_properties.py) -----------------------------------
# Bounded runs by default; ``pytest --hypothesis-profile=netkeepalive-long``
# for a longer search.  No deadline: a busy machine is not a failure.
settings.register_profile(
    "netkeepalive",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "netkeepalive-long", settings.get_profile("netkeepalive"), max_examples=5000
)
settings.load_profile("netkeepalive")


# -- show/set (tests/test_retrofit*.py, tests/test_pidfd.py) -------------------


@pytest.fixture
def main() -> Callable[[list[str]], int]:
    """``netkeepalive.cli.main``, run in this process."""
    from netkeepalive import cli

    return cli.main


@pytest.fixture
def child() -> Iterator[Child]:
    """The target process of tests/retrofit_child.py, stopped after the test."""
    from test_retrofit import Child

    c = Child()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def claim_inheritance(monkeypatch: pytest.MonkeyPatch) -> Callable[[FrozenSet[str]], None]:
    """Make the running backend's table claim that accepted sockets inherit *knobs*.

    It patches the current backend: call it after anything that replaces
    the backend (``refuse_option``, ``simulate``).
    """

    def claim(knobs: FrozenSet[str]) -> None:
        backend = netkeepalive._backends.backend()
        monkeypatch.setattr(backend, "table", dataclasses.replace(backend.table, inherited=knobs))

    return claim
