"""A process-wide keepalive policy: :func:`install`, :func:`uninstall`, :func:`installed`.

:func:`install` replaces ``connect``, ``connect_ex`` and ``listen`` of
:class:`socket.socket` (the class itself, so every library that makes its
sockets with the :mod:`socket` module is covered) with functions that call
:func:`netkeepalive.configure` on a TCP socket first and then the original
method.  Accepted connections inherit the listener's settings on Linux;
where that has not been verified (see
:attr:`netkeepalive.constants.PlatformTable.inherited`) ``accept`` is
replaced too and configures each accepted connection.

Only new sockets are configured: one already connected, connecting or
listening (``TCP_INFO``'s state on Linux) is left as it is.  Everything
that can be worked out once is worked out in :func:`install` (validation,
unit conversion, which methods to replace), so a connect pays for three
attribute reads, that state, and :func:`netkeepalive.configure`'s reads
and writes (no read-back).
:func:`uninstall` puts the original methods back exactly, or leaves ours as
a pass-through under a function another library put on top of it.
"""

from __future__ import annotations

import socket
import warnings
import weakref
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import _access, _api, _backends, _forksafe, _policy, _setsockopt_ceiling
from ._common import VALUE_KNOBS
from ._convert import Milliseconds, check_enable, from_native, to_native
from ._setsockopt_ceiling import clamped_writes
from .errors import UnsupportedOptionError

__all__ = [
    "InstallPolicy",
    "KeepaliveWarning",
    "clamped_writes",
    "install",
    "installed",
    "uninstall",
]

#: ``where(sock, address) -> bool``: whether a socket gets the policy.
Where = Callable[[socket.socket, Any], bool]


class KeepaliveWarning(RuntimeWarning):
    """An option of the installed policy could not be applied.

    The platform lacks it, or the kernel refused it on a socket; the
    connection went ahead without it.  Each option is reported once per
    process.
    """


class InstallPolicy(NamedTuple):
    """The policy :func:`install` put in place (see :func:`installed`).

    Times are whole milliseconds as the kernel gets them (truncated to whole
    seconds where the kernel takes seconds); ``None`` = left as it is.
    Options the platform lacks (with ``only_lower``, also those it cannot
    read back to compare) are listed in ``skipped`` and set to ``None``.
    """

    enable: bool
    idle: Optional[int]
    interval: Optional[int]
    probes: Optional[int]
    user_timeout: Optional[int]
    where: Optional[Where]
    only_lower: bool
    skipped: Tuple[str, ...]
    #: Whether the policy is a ceiling on what the program writes itself
    #: (``install(enforce=True)``; counts in :func:`clamped_writes`).
    enforce: bool = False


_TCP_PROTOCOLS = (0, socket.IPPROTO_TCP)
_INET = (socket.AF_INET, getattr(socket, "AF_INET6", -1))
_STREAM = socket.SOCK_STREAM

# Raw readers of the C socket object's fields: no enum conversion (the
# properties of socket.socket build an IntEnum on every read).
_raw_family = socket.socket.__mro__[1].family.__get__  # type: ignore[attr-defined]
_raw_type = socket.socket.__mro__[1].type.__get__  # type: ignore[attr-defined]
_raw_proto = socket.socket.__mro__[1].proto.__get__  # type: ignore[attr-defined]
_raw_fileno = socket.socket.fileno


#: install()/uninstall() and the warn-once memory run under the set-up lock,
#: which ``os.fork()`` waits for (:mod:`._forksafe`): no child inherits it held.
_lock = _forksafe.lock
_warned: set[Tuple[str, ...]] = set()


def _warn_once(key: Tuple[str, ...], message: str, stacklevel: int) -> None:
    """``warnings.warn(message)`` unless *key* was warned about in this process."""
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, KeepaliveWarning, stacklevel=stacklevel + 1)


class _Plan:
    """The installed policy, ready for the wrappers: one per :func:`install`."""

    __slots__ = ("accepts", "enable", "given", "kwargs", "policy", "where", "writes")

    def __init__(self, policy: InstallPolicy, kwargs: Dict[str, Any], accepts: bool) -> None:
        self.policy = policy
        self.where = policy.where
        #: Keyword arguments for configure(): only the options to set.
        self.kwargs = kwargs
        #: Whether ``accept`` configures accepted sockets (no inheritance).
        self.accepts = accepts
        # The values install() checked in configure()'s order (None: only_lower).
        p, self.enable = policy, policy.enable
        self.given = None if p.only_lower else (p.user_timeout, p.probes, p.interval, p.idle)
        self.writes: Tuple[object, Any, Any] = ((), None, None)

    def apply(self, sock: socket.socket, address: Any, stacklevel: int) -> bool:
        """Configure *sock* if ``where`` lets it; ``True`` when it was configured."""
        where = self.where
        if where is not None and not where(sock, address):
            return False
        self.configure(sock, stacklevel + 1)
        return True

    def configure(self, sock: socket.socket, stacklevel: int) -> None:
        """Configure *sock*; a refusal is warned about once, never raised.

        All or nothing, as :func:`netkeepalive.configure`: a refused option
        leaves the socket as it was (the error names anything it could not
        put back), and no other option is tried on its own afterwards.
        """
        try:
            knobs = _access.accessors
            if self.given is not None and knobs.complete:
                # configure()'s writes made once per backend: no checks, no read-back.
                made_for, writes, raw = self.writes
                if made_for is not knobs.ordered:
                    made_for, writes, raw = self.writes = _policy.writes(
                        knobs, self.given, self.enable
                    )
                if raw is not None and _policy.through_socket(sock, raw):
                    return  # refused (and put back): configure() raises the error
                if raw is None and writes is not None:
                    _access.apply_fast(knobs, _raw_fileno(sock), writes, self.enable)
                    return
            _api.configure(sock, **self.kwargs)
        except OSError as exc:
            if _raw_fileno(sock) < 0:
                return  # closed: the original method raises its own error
            _refused(exc, stacklevel + 1)


def _refused(exc: OSError, stacklevel: int) -> None:
    option = getattr(exc, "option", "") or ""
    key = ("refused", option or str(exc), str(exc.errno))
    _warn_once(
        key,
        f"netkeepalive.install: {exc}; the policy was not applied to that socket, "
        "whose connection goes ahead without it (reported once per process)",
        stacklevel + 1,
    )


#: The installed plan; ``None`` when nothing is installed.  The wrappers
#: read it once per call, so install() and uninstall() in another thread
#: never leave a call half-configured.
_active: Optional[_Plan] = None

#: Listening sockets a policy configured, for ``accept`` where accepted
#: sockets do not inherit; emptied by uninstall().
_listeners: weakref.WeakSet[socket.socket] = weakref.WeakSet()

#: name -> (whether socket.socket itself defined it, the attribute before
#: install()), for each name whose wrapper is in the chain of calls: at the
#: top of it, or under a function another library put on top of it later.
#: An entry goes only when our wrapper leaves the chain, so a wrapper is
#: never captured as "the original" below a second copy of itself.
_saved: Dict[str, Tuple[bool, Any]] = {}

# The methods the wrappers call: socket.socket's own when install() ran.
_real_connect: Callable[..., Any] = socket.socket.connect
_real_connect_ex: Callable[..., Any] = socket.socket.connect_ex
_real_listen: Callable[..., Any] = socket.socket.listen
_real_accept: Callable[..., Any] = socket.socket.accept


def _connect(self: socket.socket, address: Any) -> None:  # _connect_ex: the same lines
    """``socket.connect``, after the installed keepalive policy (netkeepalive)."""
    plan = _active
    if (
        plan is not None
        and _raw_type(self) == _STREAM
        and _raw_family(self) in _INET
        and _raw_proto(self) in _TCP_PROTOCOLS
        and _policy.fresh(self)
    ):
        where = plan.where
        if where is None or where(self, address):
            plan.configure(self, 2)
    _real_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    """``socket.connect_ex``, after the installed keepalive policy (netkeepalive)."""
    plan = _active
    if (
        plan is not None
        and _raw_type(self) == _STREAM
        and _raw_family(self) in _INET
        and _raw_proto(self) in _TCP_PROTOCOLS
        and _policy.fresh(self)
    ):
        where = plan.where
        if where is None or where(self, address):
            plan.configure(self, 2)
    result: int = _real_connect_ex(self, address)
    return result


def _listen(self: socket.socket, *backlog: int) -> None:
    """``socket.listen``, after the installed keepalive policy (netkeepalive)."""
    plan = _active
    if (
        plan is not None
        and _raw_type(self) == _STREAM
        and _raw_family(self) in _INET
        and _raw_proto(self) in _TCP_PROTOCOLS
        and _policy.fresh(self)
    ):
        address = self.getsockname() if plan.where is not None else None
        if plan.apply(self, address, 2):
            _listeners.add(self)
    _real_listen(self, *backlog)


def _accept(self: socket.socket) -> Tuple[socket.socket, Any]:
    """``socket.accept``, then the policy of the listener (netkeepalive).

    Replaces ``accept`` only where accepted sockets do not inherit the
    listener's options: a connection accepted from a listener the policy
    configured gets the same settings.
    """
    conn, address = _real_accept(self)
    plan = _active
    if plan is not None and plan.accepts and self in _listeners:
        try:
            # The listener passed ``where`` when it was configured.
            plan.configure(conn, 2)
        except BaseException:
            conn.close()
            raise
    return conn, address


_WRAPPERS: Dict[str, Callable[..., Any]] = {
    "connect": _connect,
    "connect_ex": _connect_ex,
    "listen": _listen,
    "accept": _accept,
    "setsockopt": _setsockopt_ceiling.wrapper,
}
for _name, _wrapper in list(_WRAPPERS.items())[:4]:  # named as the methods they stand for
    _wrapper.__name__ = _name
    _wrapper.__qualname__ = f"socket.{_name}"


def _set_real(name: str, original: Any) -> None:
    """Make *original* what our wrapper for *name* calls (under ``_lock``)."""
    if name == "setsockopt":
        _setsockopt_ceiling.set_real(original)
    else:
        globals()[f"_real_{name}"] = original  # _real_connect, _real_listen...


def _patch(names: List[str]) -> None:
    """Put the wrappers for *names* in the chain, take the others out (under ``_lock``).

    A wrapper already in the chain stays where it is, at the top or under
    another library's function: re-installing swaps the policy it reads.
    """
    cls = socket.socket
    for name in list(_saved):
        if name not in names:
            _restore(name)
    for name in names:
        if name in _saved:
            if _in_chain(name):
                continue
            del _saved[name]
        own = name in cls.__dict__
        original = cls.__dict__[name] if own else getattr(cls, name)
        _saved[name] = (own, original)
        _set_real(name, original)
        setattr(cls, name, _WRAPPERS[name])


def _in_chain(name: str) -> bool:
    """Whether our wrapper for *name* may still be called (under ``_lock``).

    It is when it is ``socket.socket``'s own attribute, or when another
    function took its place there and is taken to call it: one whose
    ``__wrapped__`` chain (``functools.wraps``) leads to ours, or one that
    does not say what it wraps.  It is not when the attribute is gone, or
    is again what ours replaced, or is a chain of ``__wrapped__`` that
    leads there without ours.
    """
    original = _saved[name][1]
    current = socket.socket.__dict__.get(name)
    for _ in range(64):  # a chain that long, or a loop: taken to call ours
        if current is None or current is original:
            return False
        if current is _WRAPPERS[name]:
            return True
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return True  # does not say what it wraps: taken to call ours
    return True


def _restore(name: str) -> None:
    """Take our wrapper for *name* out of the chain where it can be (under ``_lock``).

    At the top of the chain it is replaced by what it replaced (the very
    same object).  If another library has put its own function on top of it
    since, that function may call ours: ours stays, doing nothing but call
    the one below it (the policy is gone), and is reused by the next
    :func:`install` instead of being wrapped a second time.
    """
    cls = socket.socket
    own, original = _saved[name]
    if cls.__dict__.get(name) is not _WRAPPERS[name]:
        if not _in_chain(name):
            del _saved[name]
        return
    del _saved[name]
    if own:
        setattr(cls, name, original)
    else:
        delattr(cls, name)


def install(
    *,
    enable: bool = True,
    idle: Optional[Milliseconds] = None,
    interval: Optional[Milliseconds] = None,
    probes: Optional[int] = None,
    user_timeout: Optional[Milliseconds] = None,
    where: Optional[Where] = None,
    only_lower: bool = False,
    enforce: bool = False,
) -> InstallPolicy:
    """Give every TCP socket of this process keepalive settings before it connects.

    Every ``SOCK_STREAM`` socket of family ``AF_INET``/``AF_INET6`` that
    connects through the :mod:`socket` module (``connect``, ``connect_ex``:
    :func:`socket.create_connection`, :mod:`http.client`, urllib3, requests,
    httpx, asyncio's selector event loop...) gets
    :func:`netkeepalive.configure` with these values just before the
    connection is made, and so does every TCP socket that starts to
    ``listen`` (accepted connections inherit them on Linux; elsewhere
    ``accept`` configures each one).  UDP, UNIX and raw sockets are never
    touched.

    ``SO_KEEPALIVE`` follows *enable*; ``idle``, ``interval``,
    ``user_timeout`` (ms) and ``probes`` are set when not ``None``, as for
    :func:`~netkeepalive.configure`, and are checked here: a bad value
    raises ``TypeError``/``ValueError`` now, with nothing installed.  An
    option the platform lacks (with *only_lower*, also one it cannot read
    back) is skipped with one :class:`KeepaliveWarning` per process; so is
    an option the kernel refuses on a socket: that socket is left as it was
    (all or nothing) and its connection goes ahead.  Sockets already
    connected, connecting or listening are never changed, even when
    ``connect`` or ``listen`` is called on them again.
    *where*, if given, is called as ``where(sock, address)`` (the address
    given to ``connect``; for ``listen``, the local address) and the socket
    is configured only if it returns true.  With *only_lower*, each value is set only where the
    socket's current one is higher (``configure(..., only_lower=True)``).

    With *enforce*, the policy is also a ceiling on what the program writes
    itself with ``socket.setsockopt`` on a TCP socket: a shorter time or
    fewer probes stay as written; turning keepalive off, a longer time,
    more probes or a user timeout of 0 are replaced by the policy's value
    and counted in :func:`clamped_writes`.

    Calling it again replaces the policy; :func:`uninstall` removes it.
    Safe to call from any thread.  Returns the policy, as :func:`installed`.
    """
    check_enable(enable, "install: enable")
    check_enable(only_lower, "install: only_lower")
    check_enable(enforce, "install: enforce")
    if where is not None and not callable(where):
        raise TypeError(f"install: where: expected a callable, got {type(where).__name__}")
    backend = _backends.backend()
    backend.option("enable")  # no SO_KEEPALIVE at all: nothing to install
    values: Dict[str, Optional[int]] = {}
    skipped: List[Tuple[str, UnsupportedOptionError]] = []
    for knob, value in zip(VALUE_KNOBS, (idle, interval, probes, user_timeout)):
        values[knob] = None
        if value is None:
            continue
        try:
            opt = backend.option(knob)
        except UnsupportedOptionError as exc:
            skipped.append((knob, exc))
            continue
        # Checked now (TypeError/ValueError); stored as the plain int of ms
        # that gives the kernel the same value, which configure() takes on
        # its fast path.
        ms = from_native(opt, to_native(opt, value, knob))
        if only_lower and not opt.readable:
            # configure(only_lower=True) would refuse the whole call on every
            # socket, SO_KEEPALIVE included: leave this one out instead.
            why = f"only_lower compares with the current value, and {opt.name} cannot be read back"
            skipped.append((knob, UnsupportedOptionError.for_knob(knob, backend.table.name, why)))
            continue
        values[knob] = ms
    policy = InstallPolicy(
        enable,
        values["idle"],
        values["interval"],
        values["probes"],
        values["user_timeout"],
        where,
        only_lower,
        tuple(knob for knob, _missing in skipped),
        enforce,
    )
    kwargs: Dict[str, Any] = {"enable": enable}
    kwargs.update((k, v) for k, v in values.items() if v is not None)
    if only_lower:
        kwargs["only_lower"] = True
    for knob, missing in skipped:
        _warn_once(
            ("unsupported", knob),
            f"netkeepalive.install: {missing}; new connections get the other options without it",
            2,
        )
    inherited = backend.table.inherited
    needs_accept = not {"enable", *(k for k in VALUE_KNOBS if k in kwargs)} <= inherited
    names = ["connect", "connect_ex", "listen"] + (["accept"] if needs_accept else [])
    rules = _setsockopt_ceiling.build_rules(backend, enable, values) if enforce else {}
    if enforce:
        names.append("setsockopt")
    global _active
    with _lock:
        _patch(names)
        _setsockopt_ceiling.set_rules(rules, where)
        _active = _Plan(policy, kwargs, needs_accept)
    return policy


def uninstall() -> Optional[InstallPolicy]:
    """Remove the policy and put ``socket.socket``'s original methods back.

    New connections are left alone again; sockets already configured keep
    their settings.  A method another library replaced after :func:`install`
    (calling ours) keeps its replacement: ours, under it, then only calls
    the method it replaced.  Returns the policy that was installed, or ``None``.
    """
    global _active
    with _lock:
        plan = _active
        _active = None
        _setsockopt_ceiling.set_rules({}, None)
        for name in list(_saved):
            _restore(name)
        _listeners.clear()
    return None if plan is None else plan.policy


def installed() -> Optional[InstallPolicy]:
    """The policy :func:`install` put in place, or ``None``."""
    plan = _active
    return None if plan is None else plan.policy
