"""Property-based tests: every setter, configure(), socket_options() and the converter.

Each test draws values of every kind a caller may pass (ints, ``int``
subclasses, floats, timedeltas, bools and things that are no number) and
checks them against an independent statement of the documented rules:

* a time is truncated, exactly, to whole units of the kernel's option
  (seconds for ``TCP_KEEPIDLE``/``TCP_KEEPINTVL``, milliseconds for
  ``TCP_USER_TIMEOUT`` on Linux); a non-zero time that truncates to 0, a
  negative or non-finite one, or a result outside the option's range is a
  ``ValueError``; only a true zero is 0;
* an ``int`` subclass counts as the ``int`` it equals; ``bool`` and
  anything that is not an ``int``, ``float`` or ``timedelta`` (an ``int``
  for a count) is a ``TypeError``.

Then either the documented exception was raised and the socket is exactly
as before, or the kernel holds the expected value, read back with the
standard library's ``socket.getsockopt``, never through netkeepalive.
Every example gets a fresh loopback connection.  Run lengths come from the
Hypothesis profiles in conftest.py.
"""

from __future__ import annotations

import math
import socket
import sys
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from enum import IntEnum
from fractions import Fraction
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type, Union

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import netkeepalive as nk
from netkeepalive._convert import to_native
from netkeepalive._sockopts import checked_options
from netkeepalive.constants import LINUX

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux kernel")

TCP = socket.IPPROTO_TCP

#: knob -> (option number, ms per kernel unit (None: a count), lowest, highest),
#: as the Linux kernel takes them (include/net/tcp.h, tcp_sock_set_*).
SPEC: Dict[str, Tuple[int, Optional[int], int, int]] = {
    "idle": (socket.TCP_KEEPIDLE, 1000, 1, 32767),
    "interval": (socket.TCP_KEEPINTVL, 1000, 1, 32767),
    "probes": (socket.TCP_KEEPCNT, None, 1, 127),
    "user_timeout": (socket.TCP_USER_TIMEOUT, 1, 0, 2**31 - 1),
}
KNOBS = tuple(SPEC)

#: What each socket holds before the call: nothing a default could produce,
#: so a silent reset (to 0 or to the system default) shows.
PRIMED = {"enable": 0, "idle": 7, "interval": 8, "probes": 9, "user_timeout": 10}

Outcome = Union[int, Type[Exception]]


def expected(knob: str, value: object) -> Outcome:
    """The native value the documentation promises for *value*, or the exception."""
    _number, per_unit, lowest, highest = SPEC[knob]
    if isinstance(value, bool):
        return TypeError
    if per_unit is None:
        if not isinstance(value, int):
            return TypeError
        native = int(value)
    else:
        if isinstance(value, int):
            exact = Fraction(int(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                return ValueError
            exact = Fraction(value)
        elif isinstance(value, timedelta):
            exact = Fraction(value // timedelta(microseconds=1), 1000)
        else:
            return TypeError
        if exact < 0:
            return ValueError
        native = math.floor(exact / per_unit)
        if native == 0 and exact != 0:
            return ValueError
    return native if lowest <= native <= highest else ValueError


def is_zero(value: object) -> bool:
    """A true zero of a time (``initial_delay=0`` leaves the idle time alone)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == 0
    return isinstance(value, timedelta) and value == timedelta(0)


def snapshot(sock: socket.socket) -> Dict[str, int]:
    """``SO_KEEPALIVE`` and the four TCP options (by knob), as the kernel reports them."""
    state = {"enable": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)}
    for knob, (number, *_) in SPEC.items():
        state[knob] = sock.getsockopt(TCP, number)
    return state


@pytest.fixture(scope="module")
def server() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        yield srv


@contextmanager
def connection(server: socket.socket) -> Iterator[socket.socket]:
    """A fresh established loopback connection, primed with :data:`PRIMED`; its client end."""
    with socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        with accepted:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, PRIMED["enable"])
            for knob, (number, *_) in SPEC.items():
                client.setsockopt(TCP, number, PRIMED[knob])
            assert snapshot(client) == PRIMED
            yield client


# -- values ------------------------------------------------------------------


class Level(IntEnum):
    ZERO = 0
    ONE = 1
    THREE = 3
    BELOW_A_SECOND = 999
    SECOND = 1000
    MOST_PROBES = 127
    TOO_MANY_PROBES = 128


class Millis(int):
    """A plain ``int`` subclass."""


#: Where the rules change: unit, range and C int limits, each side.
EDGES = sorted(
    {e + d for e in (0, 1, 127, 999, 1000, 32_767_999, 2**31 - 1, 2**32) for d in (-1, 0, 1)}
)

ints = st.one_of(
    st.sampled_from(EDGES),
    st.integers(-3, 3000),
    st.integers(0, 40_000_000),
    st.integers(-(2**70), 2**70),
)
int_subclasses = st.one_of(st.sampled_from(list(Level)), ints.map(Millis))
floats = st.one_of(
    st.floats(),  # NaN and infinities included
    st.floats(-2.0, 2.0),
    st.floats(0.0, 40_000_000.0),
    st.builds(lambda edge, d: edge + d, st.sampled_from(EDGES), st.floats(-1.0, 1.0)),
)
timedeltas = st.one_of(
    st.timedeltas(),
    st.integers(-2000, 2_000_000).map(lambda us: timedelta(microseconds=us)),
    st.integers(0, 40_000_000_000).map(lambda us: timedelta(microseconds=us)),
    st.builds(
        lambda edge, us: timedelta(milliseconds=edge, microseconds=us),
        st.sampled_from([e for e in EDGES if -1 <= e <= 2**32]),
        st.integers(-1000, 1000),
    ),
)
#: Non-zero times under one millisecond or one second: never a silent 0.
under_one_unit = st.one_of(
    st.integers(1, 999).map(lambda us: timedelta(microseconds=us)),
    st.integers(1, 999_999).map(lambda us: timedelta(microseconds=us)),
    st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
    st.floats(0.0, 1000.0, exclude_min=True, exclude_max=True),
    st.integers(1, 999),
)
not_numbers = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.sampled_from([b"1000", Decimal("1000"), Fraction(3, 2), 3 + 0j, [1000]]),
)
values = st.one_of(ints, int_subclasses, floats, timedeltas, under_one_unit, not_numbers)
#: A keyword argument of configure()/socket_options(): often left out.
optional_values = st.one_of(st.none(), values)
enables = st.one_of(st.booleans(), st.sampled_from([0, 1, None, "yes"]))

SETTERS: List[Tuple[str, Callable[[Any, Any], bool]]] = [
    ("idle", nk.set_keepalive_idle),
    ("interval", nk.set_keepalive_interval),
    ("interval", nk.setKeepAliveInterval),
    ("probes", nk.set_keepalive_probes),
    ("probes", nk.setKeepAliveProbes),
    ("user_timeout", nk.set_user_timeout),
    ("user_timeout", nk.setUserTimeout),
]


def _errors(kwargs: Dict[str, Any]) -> Tuple[Type[Exception], ...]:
    """The exceptions the values given in *kwargs* call for (empty: all valid)."""
    found = []
    for knob, value in kwargs.items():
        outcome = expected(knob, value)
        if not isinstance(outcome, int):
            found.append(outcome)
    return tuple(found)


# -- the properties ------------------------------------------------------------


@given(setter=st.sampled_from(SETTERS), value=values)
def test_setters(server: socket.socket, setter: Tuple[str, Any], value: object) -> None:
    knob, function = setter
    outcome = expected(knob, value)
    with connection(server) as sock:
        if isinstance(outcome, int):
            assert function(sock, value) is True
            assert snapshot(sock) == {**PRIMED, knob: outcome}
        else:
            with pytest.raises(outcome):
                function(sock, value)
            assert snapshot(sock) == PRIMED


@given(enable=enables, initial_delay=values)
def test_set_keepalive(server: socket.socket, enable: object, initial_delay: object) -> None:
    with connection(server) as sock:
        if not isinstance(enable, bool):
            outcome: Outcome = TypeError
        elif is_zero(initial_delay):
            outcome = PRIMED["idle"]  # left as it was
        else:  # validated even when disabling
            outcome = expected("idle", initial_delay)
        if isinstance(outcome, int):
            assert nk.set_keepalive(sock, enable, initial_delay) is True  # type: ignore[arg-type]
            want = {**PRIMED, "enable": int(bool(enable))}
            if enable:
                want["idle"] = outcome
            assert snapshot(sock) == want
        else:
            with pytest.raises(outcome):
                nk.set_keepalive(sock, enable, initial_delay)  # type: ignore[arg-type]
            assert snapshot(sock) == PRIMED


@example(
    enable=True, idle=None, interval=None, probes=None, user_timeout=timedelta(microseconds=500)
)
@given(
    enable=enables,
    idle=optional_values,
    interval=optional_values,
    probes=optional_values,
    user_timeout=optional_values,
)
def test_configure(
    server: socket.socket,
    enable: object,
    idle: object,
    interval: object,
    probes: object,
    user_timeout: object,
) -> None:
    given_values = {
        "idle": idle,
        "interval": interval,
        "probes": probes,
        "user_timeout": user_timeout,
    }
    kwargs = {knob: value for knob, value in given_values.items() if value is not None}
    errors = _errors(kwargs) + (() if isinstance(enable, bool) else (TypeError,))
    with connection(server) as sock:
        if errors:
            with pytest.raises(errors):
                nk.configure(sock, enable=enable, **kwargs)  # type: ignore[arg-type]
            assert snapshot(sock) == PRIMED
            return
        settings = nk.configure(sock, enable=enable, **kwargs)  # type: ignore[arg-type]
        state = snapshot(sock)
    want: Dict[str, Outcome] = {**PRIMED, "enable": int(bool(enable))}
    want.update((knob, expected(knob, value)) for knob, value in kwargs.items())
    assert state == want
    public = {knob: state[knob] * (SPEC[knob][1] or 1) for knob in KNOBS}  # in ms or a count
    assert settings == nk.Settings(enabled=bool(enable), **public)


@example(idle=None, interval=None, probes=None, user_timeout=timedelta(microseconds=500))
@given(
    idle=optional_values,
    interval=optional_values,
    probes=optional_values,
    user_timeout=optional_values,
)
def test_socket_options(
    server: socket.socket, idle: object, interval: object, probes: object, user_timeout: object
) -> None:
    given_values = {
        "idle": idle,
        "interval": interval,
        "probes": probes,
        "user_timeout": user_timeout,
    }
    kwargs = {knob: value for knob, value in given_values.items() if value is not None}
    errors = _errors(kwargs)
    if errors:
        with pytest.raises(errors):
            nk.socket_options(**kwargs)
        with pytest.raises(errors):
            checked_options(**kwargs)
        return
    assert checked_options(**kwargs) == kwargs
    options = nk.socket_options(**kwargs)
    natives = {knob: expected(knob, value) for knob, value in kwargs.items()}
    want = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    want += [(TCP, SPEC[knob][0], natives[knob]) for knob in KNOBS if knob in natives]  # type: ignore[misc]
    assert options == want
    with connection(server) as sock:
        for level, number, native in options:  # as urllib3/httpx apply them
            sock.setsockopt(level, number, native)
        assert snapshot(sock) == {**PRIMED, "enable": 1, **natives}


@given(knob=st.sampled_from(KNOBS), value=values)
def test_to_native(knob: str, value: object) -> None:
    opt = LINUX.option(knob)
    assert opt is not None
    outcome = expected(knob, value)
    if isinstance(outcome, int):
        native = to_native(opt, value, knob)
        assert type(native) is int
        assert native == outcome
    else:
        with pytest.raises(outcome, match=f"^{knob}: "):
            to_native(opt, value, knob)


def _result(call: Callable[[socket.socket], object], server: socket.socket) -> object:
    """What *call* did on a fresh connection: its error (type and text), or
    what it returned and the kernel's state after it."""
    with connection(server) as sock:
        try:
            returned = call(sock)
        except (TypeError, ValueError) as exc:
            return type(exc), str(exc)
        return returned, snapshot(sock)


@given(
    value=int_subclasses,
    where=st.sampled_from(
        ["idle", "interval", "probes", "user_timeout", "initial_delay", "configure", "options"]
    ),
)
def test_int_subclass_is_the_int_it_equals(server: socket.socket, value: int, where: str) -> None:
    """Same result and kernel state, or the same error word for word, as the plain int."""

    def call(value: int) -> Callable[[socket.socket], object]:
        if where == "initial_delay":
            return lambda sock: nk.set_keepalive(sock, True, value)
        if where == "configure":
            return lambda sock: nk.configure(sock, idle=value, probes=value, user_timeout=value)
        if where == "options":
            return lambda sock: nk.socket_options(interval=value, user_timeout=value)
        setter = dict(SETTERS)[where]
        return lambda sock: setter(sock, value)

    plain = int(value)
    assert type(plain) is int
    assert _result(call(value), server) == _result(call(plain), server)
