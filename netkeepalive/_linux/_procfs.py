"""Find a process's TCP sockets in ``/proc`` (Linux).

``/proc/PID/fd/N`` links to ``socket:[INODE]`` for sockets; the process's
own network namespace lists its TCP sockets, by inode, in
``/proc/PID/net/tcp`` and ``/proc/PID/net/tcp6`` with addresses and state.
A TCP socket that is neither bound nor connected is in neither table, nor
is one the process opened before it moved to another network namespace;
the socket file system's ``system.sockprotoname`` attribute still names
its protocol (``TCP``/``TCPv6``), so it is found too, with its addresses
and state unknown (``None``) until the caller reads them from the socket.

Processes in one network namespace see the same tables: :class:`Tables`
reads and parses them once per namespace.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

from ..tcp_info import TCP_STATES

__all__ = [
    "TCP_STATES",
    "Endpoint",
    "Tables",
    "TcpSocket",
    "list_pids",
    "parse_tcp_table",
    "socket_fds",
    "status_field",
    "tcp_sockets",
    "thread_group",
    "what_is",
]


_TCP_PROTO_NAMES = {b"TCP": "tcp", b"TCPv6": "tcp6"}


class Endpoint(NamedTuple):
    """One row of ``/proc/PID/net/tcp{,6}``."""

    family: str  # "tcp" or "tcp6"
    local: str
    remote: str
    state: str


@dataclass(frozen=True)
class TcpSocket:
    """A TCP socket held by process ``pid`` as descriptor ``fd``.

    ``local``, ``remote`` and ``state`` are ``None`` for a socket that is
    not in the process's namespace's tables (not read yet, never guessed).
    """

    pid: int
    fd: int
    inode: int
    family: str
    local: Optional[str]
    remote: Optional[str]
    state: Optional[str]


def list_pids(proc: str = "/proc") -> List[int]:
    """Every process id in *proc*, ascending."""
    return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


def _address(text: str) -> str:
    """``0100007F:1F90`` or ``0000...01000000:1F90`` as ``127.0.0.1:8080`` / ``[::1]:8080``.

    The all-zero address with port 0 (no peer, not bound) is ``-``.
    """
    host_hex, port_hex = text.split(":")
    port = int(port_hex, 16)
    host = _hosts.get(host_hex)
    if host is None:
        host = _host(host_hex)
        if len(_hosts) < 4096:  # a table names few hosts; keep the cache small
            _hosts[host_hex] = host
    if port == 0 and host in ("0.0.0.0", "[::]"):
        return "-"  # no address: a listener's peer, an unbound socket
    return f"{host}:{port}"


#: Hosts already decoded by :func:`_host`, by their hexadecimal form.
_hosts: Dict[str, str] = {}


def _host(text: str) -> str:
    """``0100007F`` as ``127.0.0.1``, a 32-digit IPv6 address as ``[::1]``."""
    # The kernel prints each 32-bit word of the address with %08X, i.e. in
    # the host's byte order.
    raw = b"".join(
        int(text[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(text), 8)
    )
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return f"[{socket.inet_ntop(socket.AF_INET6, raw)}]"


def parse_tcp_table(text: str, family: str) -> Dict[int, Endpoint]:
    """Rows of a ``/proc/net/tcp``-format table by socket inode (0 = no socket)."""
    rows: Dict[int, Endpoint] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        inode = int(fields[9])
        if inode == 0:  # TIME_WAIT and request sockets have no inode
            continue
        state = TCP_STATES.get(int(fields[3], 16), f"0x{fields[3]}")
        rows[inode] = Endpoint(family, _address(fields[1]), _address(fields[2]), state)
    return rows


def _read_tables(pid: int, proc: str) -> Dict[int, Endpoint]:
    """Parse ``tcp`` and ``tcp6`` of process *pid*'s network namespace."""
    rows: Dict[int, Endpoint] = {}
    for family in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, str(pid), "net", family)) as f:
                text = f.read()
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
        rows.update(parse_tcp_table(text, family))
    return rows


class Tables:
    """The TCP tables of each network namespace, read and parsed once.

    Keyed by the namespace's identity (``/proc/PID/ns/net``'s device and
    inode); a process whose namespace cannot be told (no ptrace read access
    to it) gets its own reading.  ``reads`` counts the readings made.
    """

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self.reads = 0
        self._by_namespace: Dict[Tuple[int, int], Dict[int, Endpoint]] = {}

    def for_pid(self, pid: int) -> Dict[int, Endpoint]:
        """The rows of process *pid*'s network namespace, by socket inode."""
        try:
            st = os.stat(os.path.join(self.proc, str(pid), "ns", "net"))
        except OSError:
            self.reads += 1
            return _read_tables(pid, self.proc)
        key = (st.st_dev, st.st_ino)
        rows = self._by_namespace.get(key)
        if rows is None:
            self.reads += 1
            rows = self._by_namespace[key] = _read_tables(pid, self.proc)
        return rows


def status_field(pid: Union[int, str], name: str, proc: str = "/proc") -> Optional[str]:
    """Field *name* of ``/proc/PID/status`` (*pid* may be ``"self"``), or ``None``."""
    try:
        with open(os.path.join(proc, str(pid), "status")) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == name:
                    return value.strip()
    except OSError:
        pass
    return None


def thread_group(pid: int, proc: str = "/proc") -> Optional[int]:
    """The process (thread group) id of thread *pid*, or ``None`` if unknown."""
    tgid = status_field(pid, "Tgid", proc)
    try:
        return None if tgid is None else int(tgid)
    except ValueError:
        return None


def socket_fds(pid: int, proc: str = "/proc") -> List[Tuple[int, int]]:
    """``(fd, inode)`` of every socket process *pid* holds, by ascending fd.

    Reading another process's descriptors needs ptrace read access: raises
    ``PermissionError`` without it, ``FileNotFoundError`` when the process
    is gone.  A descriptor closed while the list is read is skipped.
    """
    base = os.path.join(proc, str(pid), "fd")
    found: List[Tuple[int, int]] = []
    for name in os.listdir(base):
        try:
            target = os.readlink(os.path.join(base, name))
        except FileNotFoundError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            found.append((int(name), int(target[8:-1])))
    found.sort()
    return found


def _unlisted_family(path: str) -> Optional[str]:
    """``tcp``/``tcp6`` if the socket at *path* is TCP (``system.sockprotoname``)."""
    try:
        name = os.getxattr(path, "system.sockprotoname")
    except OSError:
        return None
    return _TCP_PROTO_NAMES.get(name.rstrip(b"\0"))


def tcp_sockets(
    pid: int,
    proc: str = "/proc",
    only_fds: Optional[List[int]] = None,
    tables: Optional[Tables] = None,
) -> List[TcpSocket]:
    """The TCP sockets of process *pid*, by ascending fd.

    With *only_fds*, just those descriptors (the ones that are TCP sockets).
    With *tables*, the namespace's tables come from (and stay in) that
    cache.  Raises like :func:`socket_fds`.
    """
    fds = socket_fds(pid, proc)
    if only_fds is not None:
        wanted = set(only_fds)
        fds = [(fd, inode) for fd, inode in fds if fd in wanted]
    if not fds:
        return []
    table = _read_tables(pid, proc) if tables is None else tables.for_pid(pid)
    found: List[TcpSocket] = []
    for fd, inode in fds:
        row = table.get(inode)
        if row is None:
            family = _unlisted_family(os.path.join(proc, str(pid), "fd", str(fd)))
            if family is not None:
                found.append(TcpSocket(pid, fd, inode, family, None, None, None))
            continue
        found.append(TcpSocket(pid, fd, inode, row.family, row.local, row.remote, row.state))
    return found


def what_is(pid: int, fd: int) -> str:
    """Why descriptor *fd* of *pid* is not something ``set`` may change."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except FileNotFoundError:
        return "not an open descriptor of the process"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if target.startswith("socket:"):
        try:
            kind = os.getxattr(f"/proc/{pid}/fd/{fd}", "system.sockprotoname")
            target = kind.rstrip(b"\0").decode("ascii", "replace") + " " + target
        except OSError:
            pass
    return f"not a TCP socket ({target})"
