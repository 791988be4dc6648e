"""The live event stream over a real HTTP connection: timeline lines arrive as they are
committed, and a client that reconnects with Last-Event-ID gets what it missed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.config import Settings
from siaga112.db.session import asyncpg_dsn
from siaga112.events.hub import EventHub
from siaga112.telephony.metrics import Metrics


class Server:
    def __init__(
        self, base: str, key: str, key_id: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}
        self.key_id = key_id
        self.sessionmaker = sessionmaker


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
    yield Server(f"http://127.0.0.1:{port}", key.raw, str(key.id), committed)
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


async def next_frame(it: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(it), 5)


async def test_events_arrive_live_and_resume_after_reconnect(server: Server) -> None:
    async with httpx.AsyncClient(
        base_url=server.base, headers=server.headers, timeout=10
    ) as client:
        async with client.stream(
            "GET", "/v1/events/stream", params={"kind": ["created", "note"]}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            it = frames(response)
            assert await next_frame(it) == {"connected": True}
            r = await client.post("/v1/incidents", json={"channel": "radio", "summary": "live"})
            incident = r.json()["id"]
            created = await next_frame(it)
        assert created["event"] == "created"
        assert created["data"]["incident_id"] == incident
        # While nobody listens: a note. Resuming from the last id seen delivers it.
        await client.post(f"/v1/incidents/{incident}/notes", json={"text": "terlewat"})
        async with client.stream(
            "GET", "/v1/events/stream", headers={"Last-Event-ID": str(created["id"])}
        ) as response:
            missed = await next_frame(frames(response))
        assert missed["event"] == "note"
        assert missed["data"]["data"] == {"text": "terlewat"}
        assert missed["id"] > created["id"]


async def test_bad_last_event_id_is_422(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base, headers=server.headers) as client:
        r = await client.get("/v1/events/stream", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"


async def _stream_reads(server: Server) -> list[dict[str, Any]]:
    async with server.sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent.after).where(
                AuditEvent.action == "location.read",
                AuditEvent.entity_type == "event_stream",
                AuditEvent.actor_key_id == server.key_id,
            )
        )
        return [dict(r or {}) for r in rows]


async def test_each_stream_connection_is_audited_once_not_per_event(server: Server) -> None:
    async with httpx.AsyncClient(
        base_url=server.base, headers=server.headers, timeout=10
    ) as client:
        async with client.stream(
            "GET", "/v1/events/stream", params={"kind": ["created", "note"]}
        ) as response:
            it = frames(response)
            assert await next_frame(it) == {"connected": True}
            r = await client.post("/v1/incidents", json={"channel": "radio", "summary": "a"})
            incident = r.json()["id"]
            await client.post(f"/v1/incidents/{incident}/notes", json={"text": "satu"})
            await client.post(f"/v1/incidents/{incident}/notes", json={"text": "dua"})
            got = [await next_frame(it) for _ in range(3)]
        assert [g["event"] for g in got] == ["created", "note", "note"]
        assert await _stream_reads(server) == [
            {
                "via": "events.stream",
                "kinds": ["created", "note"],
                "incident_id": None,
                "resume_from": None,
            }
        ]
        async with client.stream(
            "GET", "/v1/events/stream", params={"incident_id": incident}
        ) as response:
            assert await next_frame(frames(response)) == {"connected": True}
        assert len(await _stream_reads(server)) == 2
