"""The public surface: every public module, name and command stays, and nothing stray leaks.

The lists below are the surface as it was when the package was regrouped
(issue 19); a name may be added to a module's ``__all__`` (and here), none
may go without a deprecation.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

import netkeepalive
from netkeepalive import cli

ROOT = Path(__file__).resolve().parents[1]

#: module -> its ``__all__`` (sorted).
PUBLIC: Dict[str, List[str]] = {
    "netkeepalive": [
        "InstallPolicy",
        "KeepaliveParams",
        "KeepaliveWarning",
        "LibraryNotFoundError",
        "Settings",
        "SocketOptionError",
        "TcpInfo",
        "UnsupportedOptionError",
        "__version__",
        "clamped_writes",
        "configure",
        "detect_within",
        "getKeepAliveInterval",
        "getKeepAliveProbes",
        "getUserTimeout",
        "get_keepalive",
        "get_keepalive_idle",
        "get_keepalive_interval",
        "get_keepalive_probes",
        "get_settings",
        "get_tcp_info",
        "get_user_timeout",
        "install",
        "installed",
        "keepalive_options",
        "setKeepAliveInterval",
        "setKeepAliveProbes",
        "setUserTimeout",
        "set_keepalive",
        "set_keepalive_idle",
        "set_keepalive_interval",
        "set_keepalive_probes",
        "set_user_timeout",
        "socket_options",
        "system_defaults",
        "uninstall",
    ],
    "netkeepalive.errors": ["LibraryNotFoundError", "SocketOptionError", "UnsupportedOptionError"],
    "netkeepalive.constants": [
        "AIX",
        "ANDROID",
        "DARWIN",
        "DRAGONFLY",
        "DRAGONFLY_PRE_5_8",
        "FREEBSD",
        "FREEBSD_PRE_14",
        "ILLUMOS",
        "ILLUMOS_TCP_RTO_MAX",
        "ILLUMOS_TCP_RTO_MIN",
        "INT_MAX",
        "IPPROTO_TCP",
        "KNOBS",
        "LINUX",
        "NETBSD",
        "NETBSD_PRE_8",
        "OPENBSD",
        "Option",
        "PlatformTable",
        "SIO_KEEPALIVE_VALS",
        "SIO_TCP_INFO",
        "SOLARIS",
        "SOLARIS_PRE_11_4",
        "TCP_KEEPALIVE_ABORT_THRESHOLD",
        "TCP_KEEPALIVE_THRESHOLD",
        "TCP_MAXRT",
        "TCP_MAXRTMS",
        "TCP_MAXUNACKTIME",
        "TCP_STATES",
        "UINT_MAX",
        "Unit",
        "WINDOWS",
        "WINDOWS_BUILD_KEEPCNT",
        "WINDOWS_BUILD_KEEPCNT_READABLE",
        "WINDOWS_BUILD_KEEPIDLE",
        "WINDOWS_BUILD_MAXRTMS",
        "detect_platform",
        "freebsd_table",
        "generic_table",
        "linux_kernel",
        "linux_table",
        "table_for",
        "windows_table",
    ],
    "netkeepalive.tcp_info": [
        "BASE_SIZE",
        "FULL_SIZE",
        "TCP_STATES",
        "TcpInfo",
        "get_tcp_info",
        "state_and_probes",
    ],
    "netkeepalive.cgroup": [
        "CgroupError",
        "KINDS",
        "MINIMUM_KERNEL",
        "PROGRAM_NAME",
        "Policy",
        "attach",
        "cgroup2_mount",
        "cgroup_of_pid",
        "detach",
        "effective_policy",
        "effective_policy_of",
        "foreign_programs",
        "policies",
        "program_kind",
        "resolve",
        "status",
    ],
    "netkeepalive.servers": ["INHERITED", "KeepAliveMixin", "ServerKeepAlive", "inherited_options"],
    "netkeepalive.aio": ["open_connection", "start_server"],
    "netkeepalive.requests": ["KeepAliveAdapter"],
    "netkeepalive.urllib3": [
        "PoolManager",
        "ProxyManager",
        "keepalive_connection_class",
        "keepalive_pool_classes",
    ],
    "netkeepalive.httpx": ["AsyncClient", "AsyncHTTPTransport", "Client", "HTTPTransport"],
    "netkeepalive.aiohttp": ["SocketFactory", "socket_factory"],
    "netkeepalive.botocore": ["configure_client"],
    "netkeepalive.cli": ["COMMANDS", "build_parser", "main"],
}
#: Integration modules and the package each needs.
OPTIONAL = {
    "netkeepalive.requests": "requests",
    "netkeepalive.urllib3": "urllib3",
    "netkeepalive.httpx": "httpx",
    "netkeepalive.aiohttp": "aiohttp",
    "netkeepalive.botocore": "botocore",
}
COMMANDS = {"demo": [], "show": [], "set": [], "cgroup": ["attach", "status", "detach"], "run": []}


def _module(name: str) -> object:
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    return importlib.import_module(name)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_is_still_there(name: str) -> None:
    module = _module(name)
    assert sorted(module.__all__) == PUBLIC[name]  # type: ignore[attr-defined]
    for attr in PUBLIC[name]:
        assert hasattr(module, attr)


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_no_stray_public_name(name: str) -> None:
    """A public name a module defines itself is in its ``__all__``.

    Imported modules and objects defined elsewhere (``typing.Optional``,
    ``configure`` in an integration) are not counted: ``from x import *``
    and the documentation follow ``__all__``.  A plain value (a flag, a
    number) has no ``__module__`` and counts as the module's own.
    """
    module = _module(name)
    public = set(module.__all__)  # type: ignore[attr-defined]
    stray = []
    for attr, value in vars(module).items():
        if attr.startswith("_") or attr in public or inspect.ismodule(value):
            continue
        origin = getattr(value, "__module__", None)
        if isinstance(origin, str) and origin != name:
            continue
        stray.append(attr)
    assert not stray, f"{name} defines public names outside __all__: {sorted(stray)}"


def test_lazy_names_type_checking_imports_and_all_in_step() -> None:
    tree = ast.parse((ROOT / "netkeepalive" / "__init__.py").read_text(encoding="utf-8"))
    typed: Dict[str, str] = {}
    eager: set = set()
    aliases: set = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for sub in node.body:
                assert isinstance(sub, ast.ImportFrom)
                for alias in sub.names:
                    typed[alias.asname or alias.name] = "." * sub.level + (sub.module or "")
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            eager.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
            aliases.update(t.id for t in node.targets if isinstance(t, ast.Name))
    lazy = netkeepalive._LAZY
    assert typed == lazy, "the TYPE_CHECKING imports and _LAZY differ"
    assert set(netkeepalive.__all__) == eager | set(lazy) | aliases | {"__version__"}
    assert set(netkeepalive.__all__) <= set(dir(netkeepalive))
    for attr in lazy:
        assert getattr(netkeepalive, attr).__module__.startswith("netkeepalive.")


def test_lazy_modules_load_on_first_use_only() -> None:
    code = (
        "import sys, netkeepalive\n"
        "print(sorted({m for m in netkeepalive._LAZY.values()"
        " if 'netkeepalive' + m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_table() -> None:
    assert list(cli.COMMANDS) == list(COMMANDS)
    assert sorted(cli.__all__) == ["COMMANDS", "build_parser", "main"]


@pytest.mark.parametrize(
    "argv",
    [[name, "--help"] for name in COMMANDS]
    + [[name, action, "--help"] for name, actions in COMMANDS.items() for action in actions],
    ids=" ".join,
)
def test_every_command_answers_help(argv: List[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: netkeepalive {' '.join(argv[:-1])}")


def test_the_console_script_and_python_dash_m_name_the_same_main() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'netkeepalive = "netkeepalive.cli:main"' in text
    main_module = (ROOT / "netkeepalive" / "__main__.py").read_text(encoding="utf-8")
    assert "from .cli import main" in main_module
