"""A real HTTP server (uvicorn on a free port) with a live event hub for the stream's tests,
and helpers that read Server-Sent Events frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.config import Settings
from siaga112.db.session import asyncpg_dsn
from siaga112.events.hub import EventHub
from siaga112.metrics import Metrics


class Server:
    def __init__(
        self,
        base: str,
        key: str,
        key_id: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        hub: EventHub,
    ) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}
        self.key_id = key_id
        self.sessionmaker = sessionmaker
        self.hub = hub

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, headers=self.headers, timeout=30, **kwargs)


@pytest.fixture
async def server(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Server]:
    committed = async_sessionmaker(engine, expire_on_commit=False)
    async with committed() as session:
        key = await create_key(
            session=session, name="sse-test", role=Role.OPERATOR, actor=system_actor("tests")
        )
        await session.commit()
    hub = EventHub(
        dsn=asyncpg_dsn(settings.database_url_str),
        sessionmaker=committed,
        metrics=Metrics(),
        poll_s=30.0,  # live delivery must come from NOTIFY, not from polling
    )
    await hub.start()
    app = create_app(settings, engine=engine, sessionmaker=committed, event_hub=hub)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve())
    for _ in range(250):  # uvicorn offers no event to wait on: bounded polling
        if srv.started:
            break
        await asyncio.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield Server(f"http://127.0.0.1:{port}", key.raw, str(key.id), committed, hub)
    srv.should_exit = True
    await hub.stop()
    await task


async def frames(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    event: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            event["id"] = int(line[4:])
        elif line.startswith("event: "):
            event["event"] = line[7:]
        elif line.startswith("data: "):
            event["data"] = json.loads(line[6:])
        elif line == "" and event:
            yield event
            event = {}
        elif line == ": connected":
            yield {"connected": True}


async def next_frame(it: AsyncIterator[dict[str, Any]], within_s: float = 5) -> dict[str, Any]:
    return await asyncio.wait_for(anext(it), within_s)


async def next_event(it: AsyncIterator[dict[str, Any]], within_s: float = 5) -> dict[str, Any]:
    """The next event, past the connected mark."""
    while "connected" in (frame := await next_frame(it, within_s)):
        pass
    return frame


class Frames:
    """Frames read by a task of their own, so that waiting for one with a time limit does not
    close the stream (cancelling ``anext`` of an async generator would)."""

    def __init__(self, response: httpx.Response) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump(response))

    async def _pump(self, response: httpx.Response) -> None:
        async for frame in frames(response):
            await self.queue.put(frame)

    async def next(self, within_s: float = 5) -> dict[str, Any]:
        return await asyncio.wait_for(self.queue.get(), within_s)

    async def next_event(self, within_s: float = 5) -> dict[str, Any]:
        while "connected" in (frame := await self.next(within_s)):
            pass
        return frame

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._task

    async def __aenter__(self) -> Frames:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


@contextlib.asynccontextmanager
async def open_stream(client: httpx.AsyncClient, **kwargs: Any) -> AsyncIterator[Frames]:
    """GET /v1/events/stream (200 expected) with its frames read in the background."""
    async with client.stream("GET", "/v1/events/stream", **kwargs) as response:
        assert response.status_code == 200, (await response.aread())[:500]
        assert response.headers["content-type"].startswith("text/event-stream")
        async with Frames(response) as it:
            yield it
