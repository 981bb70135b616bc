"""pidfd_open/pidfd_getfd through syscall(2), and /proc socket discovery."""

from __future__ import annotations

import errno
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

import netkeepalive
from netkeepalive._linux import _pidfd, _procfs

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux-only")


def _supported() -> bool:
    try:
        _pidfd.check_supported()
    except OSError:
        return False
    return True


needs_pidfd = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _supported(),
    reason="needs pidfd_getfd (Linux 5.6+)",
)


def open_fds() -> Dict[int, str]:
    fds: Dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue
    return fds


# -- system call numbers ---------------------------------------------------


def _header_number(path: Path, name: str) -> Optional[int]:
    """``__NR_<name>`` from a kernel header, resolving ``__X32_SYSCALL_BIT + N``."""
    match = re.search(rf"#define __NR_{name}\s+(.+)", path.read_text())
    if match is None:
        return None
    value = match.group(1).strip()
    value = value.replace("__X32_SYSCALL_BIT", str(0x40000000)).strip("()")
    return sum(int(part) for part in value.split("+"))


_HEADERS = {
    # header -> (uname -m, pointer size, multiarch) of the ABI it describes
    "asm/unistd_64.h": ("x86_64", 8, "x86_64-linux-gnu"),
    "asm/unistd_32.h": ("i686", 4, "i386-linux-gnu"),
    "asm/unistd_x32.h": ("x86_64", 4, "x86_64-linux-gnux32"),
}


def _installed_headers() -> List[Any]:
    found = []
    for base in [*sorted(Path("/usr/include").glob("*-linux-gnu*")), Path("/usr/include")]:
        for header, abi in _HEADERS.items():
            if (base / header).is_file():
                found.append(pytest.param(base / header, abi, id=f"{base.name}/{header}"))
    generic = Path("/usr/include/asm-generic/unistd.h")
    if generic.is_file():
        for machine in ("aarch64", "riscv64", "loongarch64", "armv7l", "s390x", "ppc64le"):
            found.append(pytest.param(generic, (machine, 8, ""), id=f"asm-generic/{machine}"))
    i386 = [p for p in found if p.id.endswith("unistd_32.h")]
    for param in i386:  # an i386 program on an x86_64 kernel
        found.append(
            pytest.param(param.values[0], ("x86_64", 4, "i386-linux-gnu"), id="i386-on-64")
        )
    return found or [pytest.param(None, None, marks=pytest.mark.skip("no kernel headers"))]


@pytest.mark.parametrize(("header", "abi"), _installed_headers())
def test_numbers_match_the_installed_kernel_headers(header: Path, abi: Any) -> None:
    machine, pointer, multiarch = abi
    expected = (_header_number(header, "pidfd_open"), _header_number(header, "pidfd_getfd"))
    if None in expected:
        pytest.skip(f"{header} predates pidfd_getfd")
    got = _pidfd.syscall_numbers(machine, "linux", pointer, multiarch)
    assert got == expected


@pytest.mark.parametrize(
    ("machine", "pointer", "multiarch", "numbers"),
    [
        ("alpha", 8, "alpha-linux-gnu", (544, 548)),
        ("ia64", 8, "ia64-linux-gnu", (1458, 1462)),
        ("mips", 4, "mips-linux-gnu", (4434, 4438)),
        ("mips64", 4, "mips64el-linux-gnuabin32", (6434, 6438)),
        ("mips64", 8, "mips64el-linux-gnuabi64", (5434, 5438)),
        ("sparc64", 8, "sparc64-linux-gnu", (434, 438)),
        ("parisc64", 8, "hppa-linux-gnu", (434, 438)),
    ],
)
def test_numbers_with_architecture_offsets(
    machine: str, pointer: int, multiarch: str, numbers: Any
) -> None:
    # arch/alpha/kernel/syscalls/syscall.tbl, arch/ia64/..., arch/mips/kernel/syscalls/
    assert _pidfd.syscall_numbers(machine, "linux", pointer, multiarch) == numbers


def test_x32_is_told_from_i386_by_the_elf_header() -> None:
    """Without a multiarch name, the interpreter's own ELF header decides."""
    import ctypes

    if os.uname().machine != "x86_64" or ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("needs a 64-bit interpreter on x86_64")
    # This interpreter is an x86-64 ELF file: with 4-byte pointers it would
    # be an x32 program (an i386 one would be EM_386).
    assert _pidfd.syscall_numbers("x86_64", "linux", 4, "") == (0x40000000 + 434, 0x40000000 + 438)


@pytest.mark.parametrize("platform", ["darwin", "freebsd14", "win32"])
def test_other_systems_are_not_supported(platform: str) -> None:
    with pytest.raises(_pidfd.PidfdUnsupportedError) as info:
        _pidfd.syscall_numbers("x86_64", platform)
    assert info.value.errno == errno.ENOSYS
    assert platform in str(info.value)


# -- the calls, on this process's own descriptors ---------------------------


@needs_pidfd
def test_borrowed_copy_shares_the_socket(client: socket.socket) -> None:
    fds = open_fds()
    with _pidfd.opened(os.getpid()) as pidfd, _pidfd.borrowed(pidfd, client.fileno()) as fd:
        assert fd != client.fileno()
        assert os.fstat(fd).st_ino == os.fstat(client.fileno()).st_ino
        netkeepalive.configure(fd, idle=3000, probes=4)
    assert open_fds() == fds
    assert netkeepalive.get_settings(client)[:4] == (True, 3000, 75_000, 4)


@needs_pidfd
def test_borrowed_descriptor_is_closed_when_the_block_raises(client: socket.socket) -> None:
    fds = open_fds()
    with pytest.raises(RuntimeError):  # noqa: SIM117 (one with statement needs 3.10)
        with _pidfd.opened(os.getpid()) as pidfd, _pidfd.borrowed(pidfd, client.fileno()):
            raise RuntimeError("inside")
    assert open_fds() == fds


@needs_pidfd
def test_numbers_beyond_a_c_int_are_refused_not_wrapped(client: socket.socket) -> None:
    # 2**32 + n would reach the kernel as n: our own process, our own socket.
    fds = open_fds()
    big_pid = 2**32 + os.getpid()
    with pytest.raises(ValueError, match=rf"^pidfd_open\({big_pid}\): pid {big_pid} "):
        _pidfd.pidfd_open(big_pid)
    big_fd = 2**32 + client.fileno()
    with _pidfd.opened(os.getpid()) as pidfd:  # noqa: SIM117 (one with statement needs 3.10)
        with pytest.raises(ValueError, match=rf"^pidfd_getfd\(pid \d+, fd {big_fd}\): fd "):
            _pidfd.pidfd_getfd(pidfd, big_fd, os.getpid())
    assert open_fds() == fds


@needs_pidfd
def test_errors_carry_errno_and_name_the_call() -> None:
    fds = open_fds()
    with pytest.raises(_pidfd.SyscallError) as info:
        _pidfd.pidfd_open(-5)
    assert info.value.errno == errno.EINVAL
    assert str(info.value).startswith("pidfd_open(-5): [Errno 22]")
    with _pidfd.opened(os.getpid()) as pidfd:
        unused = max(open_fds()) + 50
        with pytest.raises(_pidfd.SyscallError) as info:
            _pidfd.pidfd_getfd(pidfd, unused, os.getpid())
    assert info.value.errno == errno.EBADF
    assert str(info.value) == (
        f"pidfd_getfd(pid {os.getpid()}, fd {unused}): [Errno 9] Bad file descriptor"
    )
    assert open_fds() == fds


@linux_only
def test_enosys_means_not_supported(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old kernel (errno and version injected): pidfd_getfd says ENOSYS."""
    monkeypatch.setattr(_pidfd, "_call", lambda number, *args: -errno.ENOSYS)
    monkeypatch.setattr(_pidfd, "_kernel_version", lambda: (5, 4))
    with pytest.raises(_pidfd.PidfdUnsupportedError) as info:
        _pidfd.check_supported()
    assert "needs Linux 5.6 or later" in str(info.value)


@linux_only
@pytest.mark.parametrize("command", [["show"], ["set", "1", "--idle", "5000"]])
def test_cli_on_an_old_kernel_exits_2(
    main: Callable[[List[str]], int],
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    command: List[str],
) -> None:
    monkeypatch.setattr(_pidfd, "_call", lambda number, *args: -errno.ENOSYS)
    monkeypatch.setattr(_pidfd, "_kernel_version", lambda: (5, 4))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"netkeepalive {command[0]}: not supported here" in err
    assert "Linux 5.6" in err


@pytest.mark.parametrize("command", [["show"], ["set", "1", "--idle", "5000"]])
def test_cli_on_another_system_exits_2(
    main: Callable[[List[str]], int],
    capsys: Any,
    monkeypatch: pytest.MonkeyPatch,
    command: List[str],
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "not supported here" in err
    assert "this is darwin" in err


# -- /proc ------------------------------------------------------------------


@linux_only
def test_tcp_sockets_of_this_process(tcp_pair: Any, listener: socket.socket) -> None:
    client, server = tcp_pair
    unbound = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    read_end, write_end = os.pipe()
    extra: List[socket.socket] = [unbound, udp]
    try:
        expected = {
            listener.fileno(): ("tcp", f"127.0.0.1:{listener.getsockname()[1]}", "-", "LISTEN"),
            client.fileno(): (
                "tcp",
                f"127.0.0.1:{client.getsockname()[1]}",
                f"127.0.0.1:{client.getpeername()[1]}",
                "ESTABLISHED",
            ),
            server.fileno(): (
                "tcp",
                f"127.0.0.1:{server.getsockname()[1]}",
                f"127.0.0.1:{server.getpeername()[1]}",
                "ESTABLISHED",
            ),
            # In no table: found by its protocol name, addresses and state unread.
            unbound.fileno(): ("tcp", None, None, None),
        }
        try:
            six = socket.create_server(("::1", 0), family=socket.AF_INET6)
        except OSError:
            pass
        else:
            extra.append(six)
            expected[six.fileno()] = ("tcp6", f"[::1]:{six.getsockname()[1]}", "-", "LISTEN")
        found = _procfs.tcp_sockets(os.getpid())
        got = {s.fd: (s.family, s.local, s.remote, s.state) for s in found}
        # pytest itself may hold sockets; ours must be exactly as expected.
        assert {fd: got.get(fd) for fd in expected} == expected
        for fd in (udp.fileno(), read_end, write_end):
            assert fd not in got
        for s in found:
            assert s.pid == os.getpid()
            assert s.inode == os.fstat(s.fd).st_ino
        only = _procfs.tcp_sockets(os.getpid(), only_fds=[client.fileno(), udp.fileno()])
        assert [s.fd for s in only] == [client.fileno()]
    finally:
        for s in extra:
            s.close()
        os.close(read_end)
        os.close(write_end)


@linux_only
def test_list_pids_includes_this_process() -> None:
    pids = _procfs.list_pids()
    assert os.getpid() in pids
    assert pids == sorted(pids)


def test_parse_tcp_table_decodes_addresses_in_host_byte_order() -> None:
    # Built the way the kernel prints it: each 32-bit word with %08X.
    word = int.from_bytes(bytes([127, 0, 0, 1]), sys.byteorder)
    six = "".join(
        f"{int.from_bytes(chunk, sys.byteorder):08X}"
        for chunk in (b"\x20\x01\x0d\xb8", b"\0\0\0\0", b"\0\0\0\0", b"\0\0\0\x01")
    )
    text = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode\n"
        f"   0: {word:08X}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 4242 1 0000000000000000 100 0 0 10 0\n"
        f"   1: {word:08X}:1F90 {word:08X}:D431 06 00000000:00000000 03:00000000 00000000"
        "     0        0 0 3 0000000000000000\n"
    )
    assert _procfs.parse_tcp_table(text, "tcp") == {
        4242: _procfs.Endpoint("tcp", "127.0.0.1:8080", "-", "LISTEN")
    }
    text6 = (
        "header\n"
        f"   0: {six}:0050 {six}:C350 01 00000000:00000000 00:00000000 00000000"
        "     0        0 77 1 0000000000000000\n"
    )
    assert _procfs.parse_tcp_table(text6, "tcp6") == {
        77: _procfs.Endpoint("tcp6", "[2001:db8::1]:80", "[2001:db8::1]:50000", "ESTABLISHED")
    }


def test_parse_tcp_table_names_every_state_tcp_info_names() -> None:
    # One table of state names serves /proc/net/tcp and TCP_INFO, so a
    # state 6.x kernels print (0D, BOUND_INACTIVE) reads the same in both.
    from netkeepalive import tcp_info

    assert _procfs.TCP_STATES is tcp_info.TCP_STATES
    text = (
        "header\n"
        "   0: 0100007F:1F90 00000000:0000 0D 00000000:00000000 00:00000000 00000000"
        "     0        0 99 1 0000000000000000\n"
    )
    assert _procfs.parse_tcp_table(text, "tcp")[99].state == "BOUND_INACTIVE"
