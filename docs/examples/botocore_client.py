"""boto3/botocore: keepalive on every connection of one client."""

from __future__ import annotations

from typing import Any

import botocore.session

import netkeepalive.botocore


def make_s3_client(**client_kwargs: Any) -> Any:
    # boto3.client("s3", ...) works the same way.
    client = botocore.session.get_session().create_client("s3", **client_kwargs)
    netkeepalive.botocore.configure_client(
        client, idle=10_000, interval=5_000, probes=3, user_timeout=30_000
    )
    return client
