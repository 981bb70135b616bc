"""Network, cgroup and servers of the dead-peer matrix (``benchmarks/dead_peer.py``).

:class:`Lab` makes two network namespaces (client and server, named with
this process's id) joined by a veth pair with addresses from 192.0.2.0/24
(TEST-NET-1), which exist only inside them: no traffic leaves the two
namespaces.  :meth:`Lab.silence` drops every packet between the two
addresses with nftables (iptables where nft is missing) inside the server
namespace, in both directions: the server host "vanishes" without a reset.
Everything is removed by :meth:`Lab.close`, also after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Set

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_ADDR = "192.0.2.1"
SERVER_ADDR = "192.0.2.2"
PORTS = {"hold": 7001, "http": 7002, "amqp": 7003, "redis": 7004, "postgres": 7005}


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


def netkeepalive_env() -> Dict[str, str]:
    """The environment that makes ``python -m netkeepalive`` this tree's."""
    root = os.path.dirname(HERE)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class Lab:
    """The two namespaces, the veth pair, the servers and the cgroup of a run."""

    def __init__(self) -> None:
        tag = os.getpid()
        self.client_ns = f"nkm-c-{tag}"
        self.server_ns = f"nkm-s-{tag}"
        self._veth = (f"nkmc{tag}", f"nkms{tag}")
        self._servers: Dict[str, subprocess.Popen[bytes]] = {}
        self._tmp = tempfile.mkdtemp(prefix="nkm-")
        self.cgroup: Optional[str] = None
        self.attach_error: Optional[str] = None  # why the cgroup policy is missing
        self.notes: Dict[str, str] = {}  # server kind -> why it is missing
        self.stubs: Set[str] = set()
        self._firewall = "nft" if shutil.which("nft") else "iptables"

    def up(self) -> None:
        client_veth, server_veth = self._veth
        _run("ip", "netns", "add", self.client_ns)
        _run("ip", "netns", "add", self.server_ns)
        _run("ip", "link", "add", client_veth, "type", "veth", "peer", "name", server_veth)
        for ns, dev, addr in (
            (self.client_ns, client_veth, CLIENT_ADDR),
            (self.server_ns, server_veth, SERVER_ADDR),
        ):
            _run("ip", "link", "set", dev, "netns", ns)
            _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        if self._firewall == "nft":
            ruleset = (
                "table inet nkm {\n"
                " chain in { type filter hook input priority 0; policy accept; }\n"
                " chain out { type filter hook output priority 0; policy accept; }\n"
                "}\n"
            )
            subprocess.run(
                ["ip", "netns", "exec", self.server_ns, "nft", "-f", "-"],
                input=ruleset,
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            )

    def exec_prefix(self, ns: str) -> List[str]:
        return ["ip", "netns", "exec", ns]

    def silence(self) -> None:
        """Drop everything between client and server, in the server's namespace."""
        ns = self.exec_prefix(self.server_ns)
        if self._firewall == "nft":
            _run(*ns, "nft", "add", "rule", "inet", "nkm", "in", "ip", "saddr", CLIENT_ADDR, "drop")
            _run(
                *ns, "nft", "add", "rule", "inet", "nkm", "out", "ip", "daddr", CLIENT_ADDR, "drop"
            )
        else:
            _run(*ns, "iptables", "-I", "INPUT", "-s", CLIENT_ADDR, "-j", "DROP")
            _run(*ns, "iptables", "-I", "OUTPUT", "-d", CLIENT_ADDR, "-j", "DROP")

    def unsilence(self) -> None:
        ns = self.exec_prefix(self.server_ns)
        if self._firewall == "nft":
            _run(*ns, "nft", "flush", "chain", "inet", "nkm", "in")
            _run(*ns, "nft", "flush", "chain", "inet", "nkm", "out")
        else:
            _run(*ns, "iptables", "-F", "INPUT")
            _run(*ns, "iptables", "-F", "OUTPUT")

    # -- servers -------------------------------------------------------------

    def server(self, kind: str) -> Optional[int]:
        """Start the server *kind* once; its port, or None (reason in :attr:`notes`)."""
        if kind in self._servers:
            return PORTS[kind]
        if kind in self.notes:
            return None
        port = PORTS[kind]
        try:
            if kind == "redis":
                proc = self._redis(port)
            elif kind == "postgres":
                proc = self._postgres(port)
            else:
                cmd = [sys.executable, os.path.join(HERE, "_matrix_servers.py"), kind]
                proc = self._start([*cmd, SERVER_ADDR, str(port)])
                if kind == "amqp":
                    self.stubs.add(kind)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            self.notes[kind] = str(exc)
            return None
        self._servers[kind] = proc
        if not self._wait_port(port, proc):
            self.notes[kind] = f"{kind} server did not start"
            return None
        return port

    def _start(self, cmd: List[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.exec_prefix(self.server_ns) + cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _redis(self, port: int) -> subprocess.Popen[bytes]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        return self._start(
            [
                binary,
                "--bind",
                SERVER_ADDR,
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
                "--dir",
                self._tmp,
            ]
        )

    def _postgres(self, port: int) -> subprocess.Popen[bytes]:
        bindir = _postgres_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
        data = os.path.join(self._tmp, "pg")
        os.makedirs(data)
        shutil.chown(self._tmp, "postgres")
        shutil.chown(data, "postgres")
        _run(
            "runuser",
            "-u",
            "postgres",
            "--",
            os.path.join(bindir, "initdb"),
            "-D",
            data,
            "--auth=trust",
            "-U",
            "postgres",
        )
        with open(os.path.join(data, "pg_hba.conf"), "a") as hba:
            hba.write(f"host all postgres {CLIENT_ADDR}/32 trust\n")
        return self._start(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                os.path.join(bindir, "postgres"),
                "-D",
                data,
                "-p",
                str(port),
                "-k",
                data,
                "-c",
                f"listen_addresses={SERVER_ADDR}",
            ]
        )

    def _wait_port(self, port: int, proc: subprocess.Popen[bytes]) -> bool:
        probe = (
            "import socket,sys\n"
            f"socket.create_connection(({SERVER_ADDR!r},{port}),timeout=1).close()"
        )
        for _ in range(100):  # up to ~20 s (initdb is done; postgres starts fast)
            if proc.poll() is not None:
                return False
            done = subprocess.run(
                [*self.exec_prefix(self.client_ns), sys.executable, "-c", probe],
                capture_output=True,
                timeout=10,
            )
            if done.returncode == 0:
                return True
            time.sleep(0.2)
        return False

    # -- cgroup --------------------------------------------------------------

    def make_cgroup(self) -> str:
        if self.cgroup is None:
            from netkeepalive import cgroup

            path = os.path.join(cgroup.cgroup2_mount(), f"nkm-matrix-{os.getpid()}")
            os.mkdir(path)
            self.cgroup = path
        return self.cgroup

    # -- cleanup -------------------------------------------------------------

    def close(self) -> None:
        for proc in self._servers.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 15)
        for proc in self._servers.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)
        self._servers.clear()
        if self.cgroup is not None:
            subprocess.run(
                [sys.executable, "-m", "netkeepalive", "cgroup", "detach", self.cgroup],
                capture_output=True,
                env=netkeepalive_env(),
                timeout=30,
            )
            for _ in range(50):
                try:
                    os.rmdir(self.cgroup)
                    break
                except OSError:
                    time.sleep(0.1)
            self.cgroup = None
        for ns in (self.client_ns, self.server_ns):
            _run("ip", "netns", "del", ns, check=False)
        # A pair left behind by a setup that failed before moving it.
        if os.path.exists(f"/sys/class/net/{self._veth[0]}"):
            _run("ip", "link", "del", self._veth[0], check=False)
        shutil.rmtree(self._tmp, ignore_errors=True)


def _postgres_bindir() -> Optional[str]:
    base = "/usr/lib/postgresql"
    if not os.path.isdir(base):
        return None
    for version in sorted(
        os.listdir(base), key=lambda v: int(v) if v.isdigit() else 0, reverse=True
    ):
        bindir = os.path.join(base, version, "bin")
        if os.path.exists(os.path.join(bindir, "postgres")):
            return bindir
    return None
