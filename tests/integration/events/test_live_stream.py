"""The live event stream over a real HTTP connection: timeline lines arrive as they are
committed, and a client that reconnects with Last-Event-ID gets what it missed."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from siaga112.audit.models import AuditEvent
from tests.integration.events.conftest import Server, frames, next_event, next_frame


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
            # Before or after the connected mark, as the hub had read it or not yet.
            missed = await next_event(frames(response))
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
