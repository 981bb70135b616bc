"""install() among other libraries' wrappers, on older sockets, on refusals, and enforcing.

Every check is a real loopback connection whose options are read back with
the standard library's ``getsockopt``.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import warnings
from collections.abc import Iterator
from typing import Any, Callable, Dict, List, Tuple

import pytest

import netkeepalive as nk
from netkeepalive import _install

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

TCP = socket.IPPROTO_TCP
POLICY = {"idle": 11_000, "interval": 3_000, "probes": 4, "user_timeout": 23_456}
EXPECTED = (1, 11, 3, 4, 23_456)
OTHER = {"idle": 17_000, "interval": 2_000, "probes": 6, "user_timeout": 9_000}
OTHER_EXPECTED = (1, 17, 2, 6, 9_000)
WRAPPED = ("connect", "connect_ex", "listen")
METHODS = ("connect", "connect_ex", "listen", "accept", "setsockopt")

Kernel = Tuple[int, int, int, int, int]


def kernel(sock: socket.socket) -> Kernel:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(TCP, socket.TCP_KEEPINTVL),
        sock.getsockopt(TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(TCP, socket.TCP_USER_TIMEOUT),
    )


def fresh_tcp() -> Kernel:
    with socket.socket() as sock:
        return kernel(sock)


def class_attributes() -> Dict[str, Any]:
    return {name: socket.socket.__dict__.get(name, "absent") for name in METHODS}


ORIGINAL = class_attributes()


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    nk.uninstall()
    _install._warned.clear()
    yield
    nk.uninstall()
    _install._warned.clear()
    assert class_attributes() == ORIGINAL


class Foreign:
    """Another library wrapping socket.socket's methods, the usual way.

    It keeps what it found and calls it; ``undo()`` puts back what it found
    (``del`` instead, with ``by_del``, where the class had no own attribute).
    """

    def __init__(self, by_del: bool = False, wraps: bool = False) -> None:
        self.calls: List[str] = []
        self.found: Dict[str, Tuple[bool, Any]] = {}
        self.by_del = by_del
        self.wraps = wraps
        for name in WRAPPED:
            own = name in socket.socket.__dict__
            below = getattr(socket.socket, name)
            self.found[name] = (own, below)
            setattr(socket.socket, name, self._wrapper(name, below))

    def _wrapper(self, name: str, below: Callable[..., Any]) -> Callable[..., Any]:
        def theirs(sock: socket.socket, *args: Any) -> Any:
            self.calls.append(name)
            return below(sock, *args)

        if self.wraps:
            theirs.__wrapped__ = below  # type: ignore[attr-defined]  # as functools.wraps does
        return theirs

    def undo(self) -> None:
        for name, (own, below) in self.found.items():
            if self.by_del or not own:
                delattr(socket.socket, name)
            else:
                setattr(socket.socket, name, below)


def connections(listener: socket.socket) -> List[Kernel]:
    """Options of a connect, a connect_ex and a listener, each made now."""
    seen = []
    with socket.create_connection(listener.getsockname()) as a:
        seen.append(kernel(a))
    with socket.socket() as b:
        assert b.connect_ex(listener.getsockname()) == 0
        seen.append(kernel(b))
    with socket.create_server(("127.0.0.1", 0)) as server:
        seen.append(kernel(server))
    for _ in range(2):
        listener.accept()[0].close()
    return seen


def expect(values: Kernel) -> List[Kernel]:
    return [values] * 3


# -- wrappers of other libraries: above and below, both orders (issue 17, item 5) --


@pytest.mark.parametrize("uninstall_between", [True, False])
def test_wrapper_above_then_install_again(listener: socket.socket, uninstall_between: bool) -> None:
    nk.install(**POLICY)
    foreign = Foreign()
    assert connections(listener) == expect(EXPECTED)
    if uninstall_between:
        nk.uninstall()
        # Theirs still works, ours under it does nothing.
        assert connections(listener) == expect(fresh_tcp())
    nk.install(**OTHER)
    assert connections(listener) == expect(OTHER_EXPECTED)  # no RecursionError
    assert foreign.calls.count("connect") == (3 if uninstall_between else 2)
    nk.uninstall()
    assert connections(listener) == expect(fresh_tcp())
    foreign.undo()  # ours comes back on top, as a pass-through
    assert connections(listener) == expect(fresh_tcp())
    nk.install(**POLICY)
    assert connections(listener) == expect(EXPECTED)
    nk.uninstall()
    assert class_attributes() == ORIGINAL


def test_wrapper_below(listener: socket.socket) -> None:
    foreign = Foreign()
    theirs = {name: socket.socket.__dict__[name] for name in WRAPPED}
    nk.install(**POLICY)
    assert connections(listener) == expect(EXPECTED)
    assert foreign.calls.count("connect") == 1
    nk.uninstall()
    assert {name: socket.socket.__dict__[name] for name in WRAPPED} == theirs
    assert connections(listener) == expect(fresh_tcp())
    nk.install(**OTHER)
    nk.install(**POLICY)
    assert connections(listener) == expect(EXPECTED)
    assert foreign.calls.count("connect") == 3
    nk.uninstall()
    foreign.undo()


def test_wrappers_above_and_below(listener: socket.socket) -> None:
    below = Foreign()
    nk.install(**POLICY)
    above = Foreign()
    nk.uninstall()
    nk.install(**OTHER)
    assert connections(listener) == expect(OTHER_EXPECTED)
    assert (above.calls.count("connect"), below.calls.count("connect")) == (1, 1)
    nk.uninstall()
    above.undo()
    nk.uninstall()
    below.undo()
    assert class_attributes() == ORIGINAL


def test_wrapper_above_removed_with_del(listener: socket.socket) -> None:
    """A library deleting its attribute takes ours out of the chain: install() puts it back."""
    nk.install(**POLICY)
    nk.uninstall()
    foreign = Foreign(by_del=True)  # the class has no own attributes now
    nk.install(**POLICY)
    foreign2 = Foreign(by_del=False)
    nk.uninstall()
    foreign2.undo()
    foreign.undo()  # del: ours (stranded under foreign2, now on top) goes too
    nk.install(**OTHER)
    assert connections(listener) == expect(OTHER_EXPECTED)


def test_stranded_wrapper_gone_with_a_del_then_another_library_wraps(
    listener: socket.socket,
) -> None:
    """Ours, left under a wrapper that ``del`` removes, is gone with it; a third
    library then wraps what is left.  Its ``__wrapped__`` chain shows ours is
    not in it, so install() wraps again and the policy applies."""
    nk.install(**POLICY)
    first = Foreign(by_del=True)
    nk.uninstall()  # ours stays under first's, as a pass-through
    first.undo()  # del: ours goes with it
    second = Foreign(wraps=True)
    nk.install(**OTHER)
    assert connections(listener) == expect(OTHER_EXPECTED)
    assert second.calls.count("connect") == 1
    nk.uninstall()
    second.undo()


def test_wrapper_above_unwrapped_before_uninstall(listener: socket.socket) -> None:
    nk.install(**POLICY)
    foreign = Foreign()
    foreign.undo()  # puts ours back on top
    nk.uninstall()
    assert class_attributes() == ORIGINAL
    assert connections(listener) == expect(fresh_tcp())


# -- sockets older than install() keep their settings (issue 17, item 6) ----------


def test_connected_socket_untouched_by_a_second_connect(listener: socket.socket) -> None:
    with socket.create_connection(listener.getsockname()) as client:
        client.setsockopt(TCP, socket.TCP_KEEPIDLE, 99)
        before = kernel(client)
        nk.install(**POLICY)
        assert client.connect_ex(listener.getsockname()) == errno.EISCONN
        with pytest.raises(OSError) as info:
            client.connect(listener.getsockname())
        assert info.value.errno == errno.EISCONN
        assert kernel(client) == before
        listener.accept()[0].close()


def test_listening_socket_untouched_by_a_second_listen() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        before = kernel(server)
        nk.install(**POLICY)
        server.listen(16)
        assert kernel(server) == before


def test_socket_made_before_install_but_connected_after(listener: socket.socket) -> None:
    with socket.socket() as client, socket.socket() as server:
        nk.install(**POLICY)
        client.connect(listener.getsockname())
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert (kernel(client), kernel(server)) == (EXPECTED, EXPECTED)
        listener.accept()[0].close()


def test_connected_under_the_policy_keeps_what_the_program_set_after(
    listener: socket.socket,
) -> None:
    nk.install(**POLICY)
    with socket.create_connection(listener.getsockname()) as client:
        client.setsockopt(TCP, socket.TCP_KEEPIDLE, 5)
        client.connect_ex(listener.getsockname())
        assert kernel(client) == (1, 5, *EXPECTED[2:])
        listener.accept()[0].close()


# -- all or nothing on each socket (issue 17, item 8) ------------------------------


@pytest.mark.parametrize(
    ("level", "option"),
    [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        (TCP, socket.TCP_KEEPIDLE),
        (TCP, socket.TCP_KEEPINTVL),
        (TCP, socket.TCP_KEEPCNT),
        (TCP, socket.TCP_USER_TIMEOUT),
    ],
)
def test_refused_option_leaves_the_socket_as_it_was(
    listener: socket.socket, refuse_option: Callable[..., None], level: int, option: int
) -> None:
    refuse_option(level, option, errno.EPERM)
    nk.install(**POLICY)
    client = socket.socket()
    with client:
        client.setsockopt(TCP, socket.TCP_KEEPIDLE, 99)
        before = kernel(client)
        with pytest.warns(nk.KeepaliveWarning, match="not applied to that socket") as record:
            client.connect(listener.getsockname())
        assert "Operation not permitted" in str(record[0].message)
        assert client.getpeername() == listener.getsockname()
        assert "nothing was changed" in str(record[0].message)
        assert kernel(client) == before
        listener.accept()[0].close()


# -- enforce: the policy as a ceiling (issue 22, item 2) ---------------------------


def test_enforce_clamps_what_the_program_writes(listener: socket.socket) -> None:
    assert nk.install(**POLICY).enforce is False
    assert "setsockopt" not in socket.socket.__dict__
    counts = nk.clamped_writes()
    policy = nk.install(**POLICY, enforce=True)
    assert policy.enforce is True
    assert nk.installed() == policy
    with socket.create_connection(listener.getsockname()) as client:
        assert kernel(client) == EXPECTED
        writes: List[Tuple[int, int, Any, Kernel]] = [
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0, (1, 11, 3, 4, 23_456)),
            (TCP, socket.TCP_KEEPIDLE, 3600, (1, 11, 3, 4, 23_456)),
            (TCP, socket.TCP_KEEPIDLE, 5, (1, 5, 3, 4, 23_456)),  # shorter: kept
            (TCP, socket.TCP_KEEPINTVL, 60, (1, 5, 3, 4, 23_456)),
            (TCP, socket.TCP_KEEPINTVL, 1, (1, 5, 1, 4, 23_456)),
            (TCP, socket.TCP_KEEPCNT, 9, (1, 5, 1, 4, 23_456)),
            (TCP, socket.TCP_KEEPCNT, 2, (1, 5, 1, 2, 23_456)),
            (TCP, socket.TCP_USER_TIMEOUT, 0, (1, 5, 1, 2, 23_456)),
            (TCP, socket.TCP_USER_TIMEOUT, 1000, (1, 5, 1, 2, 1000)),
            (TCP, socket.TCP_USER_TIMEOUT, 10**6, (1, 5, 1, 2, 23_456)),
            (TCP, socket.TCP_KEEPIDLE, struct.pack("i", 3600), (1, 11, 1, 2, 23_456)),
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, False, (1, 11, 1, 2, 23_456)),
        ]
        for level, option, value, after in writes:
            client.setsockopt(level, option, value)
            assert kernel(client) == after, (option, value)
        client.setsockopt(TCP, socket.TCP_NODELAY, 1)  # other options: as written
        assert client.getsockopt(TCP, socket.TCP_NODELAY) == 1
        with pytest.raises(OSError) as info:
            client.setsockopt(TCP, socket.TCP_KEEPIDLE, -1)  # the kernel's own refusal
        assert info.value.errno == errno.EINVAL
        listener.accept()[0].close()
    clamped = nk.clamped_writes()
    added = {k: clamped.get(k, 0) - counts.get(k, 0) for k in clamped}
    assert added == {"enable": 2, "idle": 2, "interval": 1, "probes": 1, "user_timeout": 2}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)  # not TCP: as written
        assert udp.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    nk.uninstall()
    assert "setsockopt" not in socket.socket.__dict__
    with socket.socket() as plain:
        plain.setsockopt(TCP, socket.TCP_KEEPIDLE, 3600)
        assert plain.getsockopt(TCP, socket.TCP_KEEPIDLE) == 3600
    assert nk.clamped_writes() == clamped


def test_enforce_only_what_the_policy_sets(listener: socket.socket) -> None:
    nk.install(idle=11_000, enforce=True)
    with socket.socket() as sock:
        sock.setsockopt(TCP, socket.TCP_KEEPCNT, 50)  # no probe count in the policy
        sock.setsockopt(TCP, socket.TCP_USER_TIMEOUT, 0)
        sock.setsockopt(TCP, socket.TCP_KEEPIDLE, 50)
        assert kernel(sock)[1:] == (11, sock.getsockopt(TCP, socket.TCP_KEEPINTVL), 50, 0)
    nk.install(enable=False, idle=11_000, enforce=True)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)  # off is the policy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # allowed: not a ceiling
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


def test_enforce_respects_where(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    nk.install(**POLICY, enforce=True, where=lambda sock, address: address is not None)
    with socket.socket() as unconnected:
        unconnected.setsockopt(TCP, socket.TCP_KEEPIDLE, 3600)  # where() says no
        assert unconnected.getsockopt(TCP, socket.TCP_KEEPIDLE) == 3600
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setsockopt(TCP, socket.TCP_KEEPIDLE, 3600)
        assert client.getsockopt(TCP, socket.TCP_KEEPIDLE) == 11
        listener.accept()[0].close()


def test_enforce_bad_type() -> None:
    with pytest.raises(TypeError, match="enforce"):
        nk.install(enforce=1)  # type: ignore[arg-type]
    assert nk.installed() is None


def test_enforce_off_again_removes_the_setsockopt_wrapper() -> None:
    nk.install(**POLICY, enforce=True)
    assert socket.socket.setsockopt is not ORIGINAL["setsockopt"]
    nk.install(**POLICY)
    assert "setsockopt" not in socket.socket.__dict__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with socket.socket() as sock:
            sock.setsockopt(TCP, socket.TCP_KEEPIDLE, 3600)
            assert sock.getsockopt(TCP, socket.TCP_KEEPIDLE) == 3600


def test_accept_wrapper_left_under_another_is_a_pass_through(
    claim_inheritance: Any,
) -> None:
    """A policy that no longer needs ``accept`` leaves a covered wrapper doing nothing."""
    inherited = nk._backends.backend().table.inherited
    claim_inheritance(frozenset())
    nk.install(**POLICY)
    ours = socket.socket.accept
    calls: List[int] = []

    def theirs(sock: socket.socket) -> Any:
        calls.append(1)
        return ours(sock)

    socket.socket.accept = theirs  # type: ignore[method-assign]
    try:
        claim_inheritance(inherited)
        nk.install(**POLICY)  # Linux inherits: accept() is no longer needed
        with socket.create_server(("127.0.0.1", 0)) as server:
            server.setsockopt(TCP, socket.TCP_KEEPIDLE, 99)  # what accepted sockets inherit
            with socket.create_connection(server.getsockname()):
                conn, _ = server.accept()
                with conn:
                    assert kernel(conn)[1] == 99  # not configured again by ours
        assert calls == [1]
    finally:
        socket.socket.accept = ours  # type: ignore[method-assign]
    nk.uninstall()
