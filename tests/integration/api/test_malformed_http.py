"""Requests too broken to reach the application get the API's JSON error shape from the HTTP
server itself (a real uvicorn on 127.0.0.1 with serve's protocol)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.api.http_protocol import JsonErrorH11Protocol
from siaga112.app import create_app
from siaga112.config import Settings


@pytest.fixture
async def port(settings: Settings, engine: AsyncEngine) -> AsyncIterator[int]:
    app = create_app(settings, engine=engine, sessionmaker=async_sessionmaker(engine))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="critical",
        lifespan="off",
        http=JsonErrorH11Protocol,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(250):  # uvicorn offers no event to wait on: bounded polling
        if server.started:
            break
        await asyncio.sleep(0.02)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    await task


MALFORMED = {
    "garbled request line": b"GARBAGE\r\n\r\n",
    "bad content-length": b"POST /v1/incidents HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "header without a colon": b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    "space in a header name": b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_http_gets_a_json_error_with_a_code(port: int, raw: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["code"] == "malformed_http"


async def test_a_sound_request_is_served_as_before(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200")
