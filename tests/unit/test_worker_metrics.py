"""A worker's own /metrics answers only the monitoring networks, as the API's does
(SIAGA112_API__METRICS_ALLOWED_NETWORKS); /healthz stays open to load balancers."""

from __future__ import annotations

import asyncio
import socket

import pytest

from siaga112.metrics import Metrics
from siaga112.net import address_in
from siaga112.worker import MetricsServer


async def _get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    head, _, body = raw.partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


@pytest.mark.parametrize(
    ("networks", "metrics_status"),
    [(["127.0.0.0/8", "::1/128"], 200), (["10.20.0.0/16"], 403)],
)
async def test_worker_metrics_answer_only_the_allowed_networks(
    networks: list[str], metrics_status: int
) -> None:
    metrics = Metrics()
    metrics.inc("lease_connection_failures")
    server = MetricsServer(metrics=metrics, allowed_networks=networks)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await server.start(sock)
    try:
        status, body = await _get(port, "/metrics")
        assert status == metrics_status
        assert ("lease_connection_failures" in body) is (metrics_status == 200)
        assert (await _get(port, "/healthz"))[0] == 200
    finally:
        await server.stop()


def test_an_ipv4_peer_of_a_dual_stack_listener_counts_as_ipv4() -> None:
    assert address_in("::ffff:127.0.0.1", ["127.0.0.0/8"])
    assert not address_in("::ffff:10.0.0.1", ["127.0.0.0/8"])
