"""The client libraries (requests, urllib3, httpx, redis, amqp, aiohttp, botocore) stay optional."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import netkeepalive

CLIENTS = (
    "requests",
    "urllib3",
    "httpx",
    "httpcore",
    "h2",
    "socksio",
    "redis",
    "amqp",
    "kombu",
    "aiohttp",
    "botocore",
    "boto3",
)


def test_importing_netkeepalive_imports_no_http_client() -> None:
    code = (
        "import sys, netkeepalive, netkeepalive.servers, netkeepalive.aio\n"
        "netkeepalive.keepalive_options(probes=3)\n"
        f"print(sorted(m for m in {CLIENTS!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "missing", "extra"),
    [
        ("netkeepalive.requests", "requests", "requests"),
        ("netkeepalive.urllib3", "urllib3", "urllib3"),
        ("netkeepalive.httpx", "httpx", "httpx"),
        ("netkeepalive.aiohttp", "aiohttp", "aiohttp"),
        ("netkeepalive.botocore", "botocore", "botocore"),
    ],
)
def test_missing_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, missing: str, extra: str
) -> None:
    # None in sys.modules makes "import <missing>" fail as if not installed.
    for name in list(sys.modules):
        if name == missing or name.startswith(missing + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.delattr(netkeepalive, module.rpartition(".")[2], raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module(module)
    assert f"needs the '{missing}' package" in str(info.value)
    assert f"netkeepalive[{extra}]" in str(info.value)
    assert module not in sys.modules
