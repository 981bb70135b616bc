"""Property-based tests: every setter, configure(), socket_options(),
keepalive_options() and the converter.

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
Every example gets a fresh loopback connection.  configure() is drawn with
and without ``only_lower``; the tuples of socket_options() and the mapping
of keepalive_options() are applied with ``socket.setsockopt``, as the
client libraries apply them.  One test gives every entry point a non-zero
time under one unit of its option (``timedelta(microseconds=500)`` for
``TCP_USER_TIMEOUT``) with valid other knobs, so that a silent 0 anywhere
fails within a default run; another checks the converter and its messages
on every platform table (seconds, NetBSD's 500 ms ticks, milliseconds).
Run lengths come from the Hypothesis profiles in conftest.py.
"""

from __future__ import annotations

import math
import re
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
from netkeepalive.constants import _TABLES, LINUX, Unit
from netkeepalive.constants import KNOBS as ALL_KNOBS

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


def _in_range(knob: str) -> st.SearchStrategy[object]:
    """Values *knob* takes, of every kind: with several knobs at once, an
    invalid value elsewhere would hide what this one did."""
    _number, per_unit, lowest, highest = SPEC[knob]
    if per_unit is None:
        return st.one_of(st.integers(lowest, highest), st.integers(lowest, highest).map(Millis))
    low_ms, high_ms = lowest * per_unit, highest * per_unit + per_unit - 1
    return st.one_of(
        st.integers(low_ms, high_ms),
        st.integers(low_ms, high_ms).map(Millis),
        st.floats(max(low_ms, 1), high_ms),  # (0, 1) ms: under one unit
        st.builds(
            lambda ms, us: timedelta(milliseconds=ms, microseconds=us if ms else 0),
            st.integers(low_ms, high_ms),
            st.integers(0, 999),
        ),
    )


def optional_values(knob: str) -> st.SearchStrategy[object]:
    """A keyword argument of configure()/socket_options(): often left out,
    often valid, sometimes a non-zero time under one unit, or anything."""
    return st.one_of(st.none(), _in_range(knob), under_one_unit, values)


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


def _given(**knobs: object) -> Dict[str, Any]:
    """The keyword arguments a caller passes: the knobs that are not ``None``."""
    return {knob: value for knob, value in knobs.items() if value is not None}


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
    enable=True,
    idle=None,
    interval=None,
    probes=None,
    user_timeout=timedelta(microseconds=500),
    only_lower=False,
)
@given(
    enable=enables,
    idle=optional_values("idle"),
    interval=optional_values("interval"),
    probes=optional_values("probes"),
    user_timeout=optional_values("user_timeout"),
    only_lower=st.booleans(),
)
def test_configure(
    server: socket.socket,
    enable: object,
    idle: object,
    interval: object,
    probes: object,
    user_timeout: object,
    only_lower: bool,
) -> None:
    """With *only_lower*, a value is written only where it is below the
    socket's (:data:`PRIMED`); a user timeout of 0 (the system's, longer
    than 10 ms) never is, and ``enable=False`` leaves ``SO_KEEPALIVE`` alone."""
    kwargs = _given(idle=idle, interval=interval, probes=probes, user_timeout=user_timeout)
    errors = _errors(kwargs) + (() if isinstance(enable, bool) else (TypeError,))
    with connection(server) as sock:
        if errors:
            with pytest.raises(errors):
                nk.configure(sock, enable=enable, only_lower=only_lower, **kwargs)  # type: ignore[arg-type]
            assert snapshot(sock) == PRIMED
            return
        settings = nk.configure(sock, enable=enable, only_lower=only_lower, **kwargs)  # type: ignore[arg-type]
        state = snapshot(sock)
    want: Dict[str, Outcome] = {**PRIMED, "enable": int(bool(enable))}
    for knob, value in kwargs.items():
        native = expected(knob, value)
        assert isinstance(native, int)
        if not only_lower:
            want[knob] = native
        elif native != 0 or knob != "user_timeout":
            want[knob] = min(native, PRIMED[knob])
    if only_lower and not enable:
        want["enable"] = PRIMED["enable"]
    assert state == want
    public = {knob: state[knob] * (SPEC[knob][1] or 1) for knob in KNOBS}  # in ms or a count
    assert settings == nk.Settings(enabled=bool(enable), **public)


@example(idle=None, interval=None, probes=None, user_timeout=timedelta(microseconds=500))
@given(
    idle=optional_values("idle"),
    interval=optional_values("interval"),
    probes=optional_values("probes"),
    user_timeout=optional_values("user_timeout"),
)
def test_socket_options(
    server: socket.socket, idle: object, interval: object, probes: object, user_timeout: object
) -> None:
    """socket_options(), keepalive_options() and checked_options(): the
    same checks; the tuples and the mapping, applied with the standard
    library as the client libraries apply them, leave the documented values
    in the kernel."""
    kwargs = _given(idle=idle, interval=interval, probes=probes, user_timeout=user_timeout)
    errors = _errors(kwargs)
    if errors:
        with pytest.raises(errors):
            nk.socket_options(**kwargs)
        with pytest.raises(errors):
            nk.keepalive_options(**kwargs)
        with pytest.raises(errors):
            checked_options(**kwargs)
        return
    checked = checked_options(**kwargs)
    options = nk.socket_options(**kwargs)
    natives = {knob: expected(knob, value) for knob, value in kwargs.items()}
    # Normalised for configure()'s fast path: plain ints in the public unit,
    # each exactly what the kernel gets.
    assert all(type(value) is int for value in checked.values())
    assert checked == {knob: n * (SPEC[knob][1] or 1) for knob, n in natives.items()}  # type: ignore[operator]
    want = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    want += [(TCP, SPEC[knob][0], natives[knob]) for knob in KNOBS if knob in natives]  # type: ignore[misc]
    assert options == want
    with connection(server) as sock:
        for level, number, native in options:  # as urllib3/httpx apply them
            sock.setsockopt(level, number, native)
        assert snapshot(sock) == {**PRIMED, "enable": 1, **natives}
    mapping = nk.keepalive_options(**kwargs)
    assert mapping == {SPEC[knob][0]: natives[knob] for knob in natives}
    with connection(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # socket_keepalive=True
        for number, native in mapping.items():  # as redis-py and py-amqp apply it
            sock.setsockopt(TCP, number, native)
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


#: Every time option of every platform table (fallbacks and extras too), as
#: ``(table, option)``: the converter and its messages are the same code
#: whatever the running system.
TIME_OPTIONS = [
    (name, opt)
    for name, table in sorted({"linux": LINUX, **_TABLES}.items())
    for opt in [
        *(table.option(knob) for knob in ALL_KNOBS),
        *(table.option(knob).fallback for knob in ALL_KNOBS if table.option(knob)),  # type: ignore[union-attr]
        *table.extras,
    ]
    if opt is not None and opt.unit in (Unit.SECONDS, Unit.HALF_SECONDS, Unit.MILLISECONDS)
]
#: Milliseconds in one unit, and that unit in the words of the messages.
UNITS = {
    Unit.SECONDS: (1000, "one second", " whole seconds"),
    Unit.HALF_SECONDS: (500, "one 500 ms tick", " ticks of 500 ms"),
    Unit.MILLISECONDS: (1, "one millisecond", " ms"),
}


@given(option=st.sampled_from(TIME_OPTIONS), value=values)
def test_to_native_every_table(option: Tuple[str, Any], value: object) -> None:
    """Seconds, 500 ms ticks or milliseconds: the documented truncation, or
    a ValueError whose message states the option's own unit and range."""
    _table, opt = option
    per_unit, one, range_unit = UNITS[opt.unit]
    if isinstance(value, bool) or not isinstance(value, (int, float, timedelta)):
        with pytest.raises(TypeError, match=f"^{opt.knob}: expected milliseconds"):
            to_native(opt, value, opt.knob)
        return
    exact = (
        Fraction(value // timedelta(microseconds=1), 1000)
        if isinstance(value, timedelta)
        else Fraction(value)
        if not isinstance(value, float) or math.isfinite(value)
        else None
    )
    native = None if exact is None or exact < 0 else math.floor(exact / per_unit)
    if native is not None and (native > 0 or exact == 0) and opt.minimum <= native <= opt.maximum:
        assert to_native(opt, value, opt.knob) == native
        return
    with pytest.raises(ValueError) as info:
        to_native(opt, value, opt.knob)
    message = str(info.value)
    assert message.startswith(f"{opt.knob}: "), message
    assert f"{opt.name} takes {opt.minimum} to {opt.maximum}{range_unit}" in message, message
    if native == 0 and exact:
        assert f"is less than {one}, the unit of {opt.name}; " in message, message
    if opt.unit is Unit.MILLISECONDS:
        said = message.replace(repr(value), "")  # a timedelta's repr says seconds=
        assert not re.search(r"\bseconds?\b|\bticks?\b", said), message


def _under_one_unit_of(knob: str) -> st.SearchStrategy[object]:
    """Non-zero times that truncate to 0 in *knob*'s kernel unit."""
    per_unit = SPEC[knob][1]
    assert per_unit is not None
    return st.one_of(
        st.integers(1, per_unit * 1000 - 1).map(lambda us: timedelta(microseconds=us)),
        st.floats(0.0, float(per_unit), exclude_min=True, exclude_max=True),
        st.integers(1, per_unit - 1) if per_unit > 1 else st.nothing(),
    )


#: Every entry point that takes a time, by name; the single-knob ones with their knob.
_ENTRY_KNOB = {function.__name__: knob for knob, function in SETTERS if knob != "probes"}
_ENTRY_KNOB["set_keepalive"] = "idle"
ENTRY_POINTS = sorted(
    {
        *_ENTRY_KNOB,
        *("configure", "configure(only_lower)", "socket_options"),
        *("keepalive_options", "checked_options"),
    }
)


def _entry_call(
    entry: str, knob: str, value: object, others: Dict[str, object]
) -> Callable[[socket.socket], object]:
    """*entry* called on a socket with *value* for *knob* (and *others*)."""
    kwargs: Dict[str, Any] = {**others, knob: value}
    if entry == "set_keepalive":
        return lambda sock: nk.set_keepalive(sock, True, value)  # type: ignore[arg-type]
    if entry in _ENTRY_KNOB:
        setter = getattr(nk, entry)
        return lambda sock: setter(sock, value)
    if entry == "configure":
        return lambda sock: nk.configure(sock, **kwargs)
    if entry == "configure(only_lower)":
        return lambda sock: nk.configure(sock, only_lower=True, **kwargs)
    if entry == "socket_options":
        return lambda sock: nk.socket_options(**kwargs)
    if entry == "keepalive_options":
        return lambda sock: nk.keepalive_options(**kwargs)
    return lambda sock: checked_options(**kwargs)


@st.composite
def _sub_unit_call(draw: Any) -> Tuple[str, str, object, Dict[str, object]]:
    entry = draw(st.sampled_from(ENTRY_POINTS))
    time_knobs = [knob for knob in KNOBS if SPEC[knob][1] is not None]
    knob = _ENTRY_KNOB.get(entry) or draw(st.sampled_from(time_knobs))
    value = draw(_under_one_unit_of(knob))
    others = {
        other: draw(_in_range(other)) for other in KNOBS if other != knob and draw(st.booleans())
    }
    return entry, knob, value, others


@given(call=_sub_unit_call())
def test_a_time_under_one_unit_is_refused_everywhere(
    server: socket.socket, call: Tuple[str, str, object, Dict[str, object]]
) -> None:
    """Whatever its type, with any valid other knobs: a ValueError naming
    the knob and the option's real unit, and the socket untouched."""
    entry, knob, value, others = call
    label = "initial_delay" if entry == "set_keepalive" else knob
    unit = "one millisecond" if SPEC[knob][1] == 1 else "one second"
    with connection(server) as sock:
        with pytest.raises(ValueError, match=f"^{label}: .* is less than {unit}, the unit of "):
            _entry_call(entry, knob, value, others)(sock)
        assert snapshot(sock) == PRIMED


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
        [
            *("idle", "interval", "probes", "user_timeout", "initial_delay"),
            *("configure", "only_lower", "options", "mapping"),
        ]
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
        if where == "mapping":
            return lambda sock: nk.keepalive_options(idle=value, probes=value)
        if where == "only_lower":
            return lambda sock: nk.configure(
                sock, probes=value, user_timeout=value, only_lower=True
            )
        setter = dict(SETTERS)[where]
        return lambda sock: setter(sock, value)

    plain = int(value)
    assert type(plain) is int
    assert _result(call(value), server) == _result(call(plain), server)
