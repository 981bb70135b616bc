"""A real keep-alive HTTP/1.1 server on 127.0.0.1 for the client tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest
from helpers.wire_servers import LoopbackHTTPServer, QuietHandler, serving

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class _Handler(QuietHandler):
    protocol_version = "HTTP/1.1"  # keep connections open between requests
    timeout = 10  # bounds how long a handler waits on an idle connection
    server: _Server

    def do_GET(self) -> None:
        # client_address is the peer of the accepted socket: the local
        # address of the socket the client's pool used for this request.
        self.server.requests.append((self.client_address[:2], self.path))
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.requests: list[tuple[tuple[str, int], str]] = []

    @property
    def url(self) -> str:
        return f"{super().url}/"

    def client_addresses(self) -> list[tuple[str, int]]:
        return [address for address, _ in self.requests]


@pytest.fixture
def http_server() -> Iterator[_Server]:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records each request's client."""
    server = _Server()
    with serving(server):
        yield server


@pytest.fixture(autouse=True)
def _no_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests and httpx read *_proxy variables; loopback traffic must stay direct."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _load_example(name: str) -> ModuleType:
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"netkeepalive_example_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example() -> Callable[[str], ModuleType]:
    """Import docs/examples/<name>.py, the very file the docs include."""
    return _load_example
