"""One stream over two sources (the incident timeline and operator states) with one id: resumed
exactly with Last-Event-ID across both kinds, filtered by type, and never losing or repeating
an event when transactions commit out of id order or roll back."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from siaga112.agencies.service import agency_ref
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.recorder import record_incoming
from siaga112.operators.live import OperatorStateChange, record_operator_states
from tests.integration.events.conftest import Frames, Server, open_stream
from tests.integration.telephony.test_recorder import facts

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


async def new_incident(conn: AsyncConnection) -> int:
    incident: int = await conn.scalar(
        text(
            "INSERT INTO incidents (status, priority, channel, created_by)"
            " VALUES ('new', 3, 'radio', 'tests') RETURNING id"
        )
    )
    return incident


async def timeline_line(conn: AsyncConnection, incident: int, label: str) -> int:
    event_id: int = await conn.scalar(
        text(
            "INSERT INTO incident_events (incident_id, actor, kind, data)"
            " VALUES (:i, 'tests', 'note', jsonb_build_object('text', CAST(:t AS text)))"
            " RETURNING id"
        ),
        {"i": incident, "t": label},
    )
    return event_id


async def operator_line(conn: AsyncConnection, label: str) -> int:
    event_id: int = await conn.scalar(
        text(
            "INSERT INTO stream_events (actor, kind, data) VALUES ('tests',"
            " 'operator_state_changed', jsonb_build_object('extension', CAST(:t AS text)))"
            " RETURNING id"
        ),
        {"t": label},
    )
    return event_id


async def collect(it: Frames, until: set[int], within_s: float) -> list[dict[str, Any]]:
    """Events until every id in ``until`` has come (and whatever came with them)."""
    got: list[dict[str, Any]] = []
    seen: set[int] = set()
    async with asyncio.timeout(within_s):
        while not until <= seen:
            event = await it.next_event(within_s)
            got.append(event)
            seen.add(event["id"])
    return got


async def test_resume_with_last_event_id_spans_both_kinds_in_id_order(
    server: Server, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        incident = await new_incident(conn)
        first = await timeline_line(conn, incident, "one")
    expected: list[tuple[str, int]] = []
    for i in range(3):  # written while no client listens, each committed on its own
        async with engine.begin() as conn:
            expected.append(("note", await timeline_line(conn, incident, f"t{i}")))
        async with engine.begin() as conn:
            expected.append(("operator_state_changed", await operator_line(conn, f"o{i}")))
    async with (
        server.client() as client,
        open_stream(client, headers={"Last-Event-ID": str(first)}) as it,
    ):
        got = await collect(it, {i for _, i in expected}, 10)
    mine = [(e["event"], e["id"]) for e in got if e["id"] in {i for _, i in expected}]
    assert mine == expected
    ids = [e["id"] for e in got]
    assert ids == sorted(set(ids)), "in id order, each once"
    assert all(e["id"] > first for e in got)
    operator = next(e for e in got if e["event"] == "operator_state_changed")
    assert operator["data"]["incident_id"] is None
    assert operator["data"]["kind"] == "operator_state_changed"
    # The same through the query parameter, from the middle.
    middle = expected[2][1]
    async with (
        server.client() as client,
        open_stream(client, params={"last_event_id": middle}) as it,
    ):
        again = await collect(it, {i for _, i in expected[3:]}, 10)
    assert [e["id"] for e in again if e["id"] <= expected[-1][1]] == [i for _, i in expected[3:]]


async def test_types_filter_keeps_only_the_types_asked_for(server: Server) -> None:
    f = facts()
    async with (
        server.client() as client,
        open_stream(client, params={"types": "call_offered, operator_state_changed"}) as it,
    ):
        assert await it.next() == {"connected": True}
        r = await client.post("/v1/incidents", json={"channel": "walk_in", "summary": "x"})
        assert r.status_code == 201, r.text
        async with server.sessionmaker() as session:
            recorded = await record_incoming(session=session, facts=f, at=T0)
            await session.commit()
        async with server.sessionmaker() as session:
            ext = f"9{uuid.uuid4().int % 10**6:06d}"
            change = OperatorStateChange(
                extension=ext, state="ringing", pause_reason=None, at=T0, queue="emergency"
            )
            assert await record_operator_states(session=session, items=[change]) == 1
            await session.commit()
        offered = await it.next_event()
        operator = await it.next_event()
    assert offered["event"] == "call_offered"
    assert offered["data"]["incident_id"] == recorded.incident_id
    assert offered["data"]["data"]["uniqueid"] == f.uniqueid
    assert offered["data"]["data"]["call_id"] == str(recorded.call_id)
    assert offered["data"]["data"]["source"] == "agi"
    assert operator["event"] == "operator_state_changed"
    assert operator["data"]["data"]["extension"] == ext
    assert operator["data"]["data"]["state"] == "ringing"
    assert operator["id"] > offered["id"]


@pytest.mark.parametrize("types", ["Call_Offered", "call offered", "x" * 41, "a,;b"])
async def test_malformed_types_are_422(server: Server, types: str) -> None:
    async with server.client() as client:
        r = await client.get("/v1/events/stream", params={"types": types})
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"
    assert r.json()["details"] == [{"field": "query.types"}]


async def test_agency_keys_cannot_read_the_stream(server: Server) -> None:
    async with server.sessionmaker() as session:
        key = await create_key(
            session=session,
            name="agency-sse",
            role=Role.AGENCY,
            actor=system_actor("tests"),
            agency=await agency_ref(session=session, code="damkar"),
        )
        await session.commit()
    async with httpx.AsyncClient(
        base_url=server.base, headers={"Authorization": f"Bearer {key.raw}"}
    ) as client:
        r = await client.get("/v1/events/stream")
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


async def test_a_later_id_waits_for_an_earlier_one_that_commits_late_and_a_rollback_is_skipped(
    server: Server, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        incident = await new_incident(conn)
    async with (
        server.client() as client,
        open_stream(client) as it,
        engine.connect() as slow,
        engine.connect() as doomed,
    ):
        assert await it.next() == {"connected": True}
        await slow.begin()
        early = await timeline_line(slow, incident, "early, committed late")
        async with engine.begin() as conn:
            late = await operator_line(conn, "later id, committed first")
        assert late > early
        # Longer than any fixed wait at a hole would be: the early id is still running.
        with pytest.raises(TimeoutError):
            await it.next(within_s=2.5)
        await slow.commit()
        assert [(await it.next_event())["id"], (await it.next_event())["id"]] == [early, late]

        await doomed.begin()
        hole = await timeline_line(doomed, incident, "rolled back")
        async with engine.begin() as conn:
            after = await timeline_line(conn, incident, "after the hole")
        assert after > hole
        with pytest.raises(TimeoutError):
            await it.next(within_s=0.5)
        await doomed.rollback()
        delivered = await it.next_event()
        assert delivered["id"] == after
        assert delivered["data"]["data"] == {"text": "after the hole"}


@pytest.mark.parametrize("seed", [1124, 7, 2026])
async def test_concurrent_writers_of_both_kinds_lose_nothing_and_repeat_nothing(
    server: Server, engine: AsyncEngine, seed: int
) -> None:
    rng = random.Random(seed)
    async with engine.begin() as conn:
        incident = await new_incident(conn)
    committed: set[int] = set()
    rolled_back: set[int] = set()

    async def writer(n: int) -> None:
        await asyncio.sleep(rng.random() * 0.3)
        async with engine.connect() as conn:
            await conn.begin()
            ids = []
            for _ in range(rng.randint(1, 3)):
                if rng.random() < 0.5:
                    ids.append(await timeline_line(conn, incident, f"w{n}"))
                else:
                    ids.append(await operator_line(conn, f"w{n}"))
                await asyncio.sleep(rng.random() * 0.05)
            if rng.random() < 0.2:
                await conn.rollback()
                rolled_back.update(ids)
            else:
                await conn.commit()
                committed.update(ids)

    def own(events: list[dict[str, Any]]) -> list[int]:
        return [e["id"] for e in events if e["id"] in committed | rolled_back]

    async with (
        server.client() as client,
        open_stream(client) as it,
    ):
        assert await it.next() == {"connected": True}
        writers = [asyncio.create_task(writer(n)) for n in range(40)]
        await asyncio.sleep(0.15)  # a second client joins while writers are in flight
        async with open_stream(client) as it2:
            assert await it2.next() == {"connected": True}
            await asyncio.gather(*writers)
            first = own(await collect(it, committed, 30))
            second = own(await collect(it2, {max(committed)}, 30))
        # A third one resumes from the middle of what the first received.
        resume_from = first[len(first) // 2]
        async with open_stream(client, headers={"Last-Event-ID": str(resume_from)}) as it3:
            rest = own(await collect(it3, {i for i in committed if i > resume_from}, 30))
    assert len(committed) >= 20, "the random schedule commits"
    assert rolled_back, "the random schedule rolls back too"
    expected = sorted(committed)
    assert first == expected, "every committed id once, in order, no rolled-back one"
    assert second == [i for i in expected if i >= second[0]], "no loss from its start on"
    assert rest == [i for i in expected if i > resume_from]
