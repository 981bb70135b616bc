"""netkeepalive.botocore.configure_client with the installed botocore.

A local server answers S3's ListBuckets; the client has dummy credentials
and its endpoint_url on 127.0.0.1.  The server reads the client's socket
when the request arrives (kernel_view.read_peer); the test reads it again
from the client's pool.  Both with ``sock.getsockopt``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest
from helpers import kernel_view
from helpers.kernel_view import Kernel

import netkeepalive

pytest.importorskip("botocore")
import botocore
import botocore.config
import botocore.session
from helpers.wire_servers import LoopbackHTTPServer, QuietHandler, serving

import netkeepalive.botocore

pytestmark = kernel_view.linux_only

WANTED = Kernel(1, 10, 5, 3, 30_000)
LIST_BUCKETS = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Owner><ID>0123</ID><DisplayName>local</DisplayName></Owner>
<Buckets><Bucket><Name>local-bucket</Name><CreationDate>2026-01-02T03:04:05.000Z</CreationDate></Bucket></Buckets>
</ListAllMyBucketsResult>"""


class _S3Handler(QuietHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server: _S3

    def do_GET(self) -> None:
        # The client's end of this connection is a socket in this process.
        kernel = kernel_view.read_peer(self.connection)
        self.server.seen.append((self.client_address[:2], self.path, kernel))
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(LIST_BUCKETS)))
        self.end_headers()
        self.wfile.write(LIST_BUCKETS)


class _S3(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__(_S3Handler)
        self.seen: list[tuple[tuple[str, int], str, Kernel]] = []


@pytest.fixture
def s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_S3]:
    """ListBuckets on 127.0.0.1; no AWS configuration or credentials from this machine."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    server = _S3()
    with serving(server):
        yield server


def _client_kwargs(endpoint_url: str, **config: Any) -> dict[str, Any]:
    return {
        "region_name": "us-east-1",
        "endpoint_url": endpoint_url,
        "aws_access_key_id": "AKIDLOCALTEST",
        "aws_secret_access_key": "local-test-secret",
        "config": botocore.config.Config(retries={"max_attempts": 1}, **config),
    }


def _pooled_socket(manager: Any) -> Any:
    """The one idle connection's socket in a urllib3 pool manager (see test_http_clients)."""
    (key,) = manager.pools.keys()
    pool = manager.pools[key]
    (conn,) = [c for c in list(pool.pool.queue) if c is not None and c.sock is not None]
    return conn.sock


def _bucket_names(response: dict[str, Any]) -> list[str]:
    return [bucket["Name"] for bucket in response["Buckets"]]


def test_client_connections_get_keepalive(
    s3_server: _S3, example: Callable[[str], ModuleType]
) -> None:
    client = example("botocore_client").make_s3_client(**_client_kwargs(s3_server.url))
    try:
        assert _bucket_names(client.list_buckets()) == ["local-bucket"]
        assert _bucket_names(client.list_buckets()) == ["local-bucket"]
        sock = _pooled_socket(client._endpoint.http_session._manager)
        local = sock.getsockname()[:2]
        # Both requests over the one socket, configured before the first.
        assert s3_server.seen == [(local, "/", WANTED)] * 2
        assert kernel_view.read(sock) == WANTED
    finally:
        client.close()


def test_plain_client_leaves_keepalive_off(s3_server: _S3) -> None:
    client = botocore.session.get_session().create_client("s3", **_client_kwargs(s3_server.url))
    try:
        assert _bucket_names(client.list_buckets()) == ["local-bucket"]
        ((_local, _path, kernel),) = s3_server.seen
        assert kernel.keepalive == 0
    finally:
        client.close()


def test_connection_to_a_configured_proxy_gets_keepalive(s3_server: _S3) -> None:
    target = "http://127.0.0.1:1"  # never contacted: the proxy answers as S3
    kwargs = _client_kwargs(target, proxies={"http": s3_server.url})
    client = botocore.session.get_session().create_client("s3", **kwargs)
    netkeepalive.botocore.configure_client(client, idle=4_000, probes=6)
    try:
        assert _bucket_names(client.list_buckets()) == ["local-bucket"]
        ((local, path, kernel),) = s3_server.seen
        assert path == target + "/"  # the proxy got the absolute URL
        proxy_manager = client._endpoint.http_session._proxy_managers[s3_server.url]
        sock = _pooled_socket(proxy_manager)
        assert sock.getsockname()[:2] == local
        assert (kernel.keepalive, kernel.idle_s, kernel.probes) == (1, 4, 6)
        assert kernel_view.read(sock) == kernel
    finally:
        client.close()


def test_connection_to_an_environment_proxy_gets_keepalive(
    s3_server: _S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = "http://127.0.0.1:1"  # never contacted: the proxy answers as S3
    monkeypatch.setenv("HTTP_PROXY", s3_server.url)
    client = botocore.session.get_session().create_client("s3", **_client_kwargs(target))
    netkeepalive.botocore.configure_client(client, user_timeout=12_000)
    try:
        assert _bucket_names(client.list_buckets()) == ["local-bucket"]
        ((local, path, kernel),) = s3_server.seen
        assert path == target + "/"
        sock = _pooled_socket(client._endpoint.http_session._proxy_managers[s3_server.url])
        assert sock.getsockname()[:2] == local
        assert (kernel.keepalive, kernel.user_timeout_ms) == (1, 12_000)
    finally:
        client.close()


def test_second_call_replaces_the_settings_and_drops_idle_connections(s3_server: _S3) -> None:
    client = botocore.session.get_session().create_client("s3", **_client_kwargs(s3_server.url))
    try:
        netkeepalive.botocore.configure_client(client, probes=4)
        client.list_buckets()
        settings = netkeepalive.botocore.configure_client(
            client, **netkeepalive.detect_within(30_000)
        )
        assert settings == {k: v for k, v in netkeepalive.detect_within(30_000).items() if v}
        client.list_buckets()
        (first, second) = s3_server.seen
        assert first[0] != second[0]  # a new connection, not the old idle one
        budget = netkeepalive.detect_within(30_000)
        assert second[2] == kernel_view.expected(budget)
        assert first[2].probes == 4
    finally:
        client.close()


def test_refuses_what_is_not_a_botocore_client() -> None:
    with pytest.raises(TypeError, match="expected a botocore or boto3 client, got dict"):
        netkeepalive.botocore.configure_client({})


def test_refuses_a_client_built_differently(s3_server: _S3) -> None:
    client = botocore.session.get_session().create_client("s3", **_client_kwargs(s3_server.url))
    try:
        # What a botocore with another HTTP session would look like.
        client._endpoint.http_session = object()
        with pytest.raises(TypeError, match=rf"botocore {botocore.__version__}.*URLLib3Session"):
            netkeepalive.botocore.configure_client(client, idle=5_000)
    finally:
        client._endpoint.http_session = None


def test_checks_values_before_touching_the_client(s3_server: _S3) -> None:
    client = botocore.session.get_session().create_client("s3", **_client_kwargs(s3_server.url))
    try:
        before = dict(client._endpoint.http_session._pool_classes_by_scheme)
        with pytest.raises(ValueError, match="TCP_KEEPCNT"):
            netkeepalive.botocore.configure_client(client, probes=0)
        assert client._endpoint.http_session._pool_classes_by_scheme == before
    finally:
        client.close()
