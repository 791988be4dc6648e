"""The live queue: waiting callers from Asterisk enriched with call, incident priority and
location; the database when AMI is not reachable; operators grouped by state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.callcontrol.protocol import QueueEntryState, QueueMemberState
from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.incidents.models import Incident
from siaga112.locations.models import Location
from siaga112.queue.service import QueueSnapshot
from tests.conftest import auth
from tests.integration.api.test_operators import FakeControl


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def api(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    control: FakeControl,
) -> AsyncIterator[httpx.AsyncClient]:
    # Each read computed afresh: these tests change the queue between reads.
    fresh = settings.model_copy(
        update={"api": settings.api.model_copy(update={"queue_snapshot_s": 0.0})}
    )
    app = create_app(fresh, engine=engine, sessionmaker=sessionmaker, call_control=control)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def shared(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    control: FakeControl,
) -> AsyncIterator[tuple[httpx.AsyncClient, Clock]]:
    """A client of an app with the shared snapshot as configured, on a clock of the test's."""
    assert settings.api.queue_snapshot_s > 0
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker, call_control=control)
    clock = Clock()
    app.state.queue_snapshot = QueueSnapshot(max_age_s=settings.api.queue_snapshot_s, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c, clock


async def add_call(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    *,
    state: str,
    priority: int,
    waited_s: int,
) -> Call:
    now = datetime.now(UTC)
    uid = f"{now.timestamp():.0f}.{uuid.uuid4().int % 10**6}"
    async with sessionmaker() as session:
        incident = Incident(
            status="new",
            channel="call",
            priority=priority,
            origin_linkedid=uid,
            created_by="tests",
        )
        session.add(incident)
        await session.flush()
        call = Call(
            uniqueid=uid,
            linkedid=uid,
            caller_number="+6281299900011",
            caller_id_available=True,
            state=state,
            source="agi",
            queue="emergency",
            offered_at=now - timedelta(seconds=waited_s + 1),
            enqueued_at=now - timedelta(seconds=waited_s),
            incident_id=incident.id,
        )
        session.add(call)
        await session.flush()
        session.add(
            Location(
                call_id=call.id,
                incident_id=incident.id,
                source="pidf_lo",
                lat=-6.28211,
                lon=106.97432,
                radius_m=35.0,
                observed_at=now,
            )
        )
        await session.commit()
        return call


async def test_waiting_callers_come_from_asterisk_with_priority_and_location(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    call = await add_call(sessionmaker, state="queued", priority=1, waited_s=40)
    control.entries = [
        QueueEntryState("emergency", 2, "PJSIP/carrier-2", "9.9", "+6281200000000", 5),
        QueueEntryState("emergency", 1, "PJSIP/carrier-1", call.uniqueid, "+6281299900011", 42),
    ]
    sup = auth(keys[Role.SUPERVISOR])
    await api.post("/v1/operators", headers=sup, json={"extension": "7301", "name": "Gita"})
    await api.post("/v1/operators", headers=sup, json={"extension": "7302", "name": "Hadi"})
    await api.post("/v1/operators/7302/login", headers=sup)
    await api.post("/v1/operators/7302/pause", headers=sup, json={"reason": "break"})
    r = await api.get("/v1/queue", headers=auth(keys[Role.INTEGRATOR]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "asterisk"
    assert body["longest_wait_s"] == 42
    first, second = body["waiting"]
    assert (first["position"], first["call_id"], first["priority"]) == (1, str(call.id), 1)
    assert first["location"]["radius_m"] == 35.0
    assert (second["call_id"], second["priority"], second["location"]) == (None, None, None)
    assert "7301" in body["operators_by_state"]["logged_out"]
    assert body["operators_by_state"]["paused"] == ["7302"]


async def test_a_queue_read_showing_locations_is_audited_once(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    call = await add_call(sessionmaker, state="queued", priority=1, waited_s=40)

    async def audits() -> list[dict[str, object]]:
        async with sessionmaker() as session:
            rows = await session.scalars(
                select(AuditEvent.after).where(
                    AuditEvent.action == "location.read", AuditEvent.entity_type == "queue"
                )
            )
            return [dict(r or {}) for r in rows]

    # Without a location shown (a caller siaga112 has no row for): nothing to audit.
    control.entries = [QueueEntryState("emergency", 1, "PJSIP/c", "9.9", "+6281200000000", 5)]
    assert (await api.get("/v1/queue", headers=auth(keys[Role.INTEGRATOR]))).status_code == 200
    assert await audits() == []
    control.entries = [
        QueueEntryState("emergency", 1, "PJSIP/c", call.uniqueid, "+6281299900011", 42),
        QueueEntryState("emergency", 2, "PJSIP/c", "9.9", "+6281200000000", 5),
    ]
    r = await api.get("/v1/queue", headers=auth(keys[Role.INTEGRATOR]))
    assert r.json()["waiting"][0]["location"] is not None
    assert await audits() == [{"via": "queue", "call_ids": [str(call.id)]}]


async def test_without_asterisk_the_queue_comes_from_the_database(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    call = await add_call(sessionmaker, state="ringing", priority=2, waited_s=30)
    await add_call(sessionmaker, state="ended", priority=2, waited_s=30)
    r = await client.get("/v1/queue", headers=auth(keys[Role.OPERATOR]))
    body = r.json()
    assert body["source"] == "database"
    assert [w["call_id"] for w in body["waiting"]] == [str(call.id)]
    assert body["waiting"][0]["wait_s"] >= 30
    assert body["operators_by_state"] == {}


async def _history(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    number: str,
    classifications: list[str | None],
) -> None:
    """Earlier calls of ``number`` (stored in its 62-form), each with its incident."""
    async with sessionmaker() as session:
        for i, classification in enumerate(classifications):
            at = datetime.now(UTC) - timedelta(days=1, minutes=i)
            uid = f"h{uuid.uuid4().int % 10**9}.{i}"
            incident = Incident(
                status="closed",
                channel="call",
                priority=3,
                classification=classification,
                caller_number=number.lstrip("+"),
                created_by="tests",
            )
            session.add(incident)
            await session.flush()
            session.add(
                Call(
                    uniqueid=uid,
                    linkedid=uid,
                    caller_number=number.lstrip("+"),
                    caller_id_available=True,
                    state="ended",
                    source="agi",
                    offered_at=at,
                    incident_id=incident.id,
                )
            )
        await session.commit()


async def _waiting(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    caller_number: str | None,
    *,
    asserted: str | None = None,
) -> Call:
    now = datetime.now(UTC)
    uid = f"w{uuid.uuid4().int % 10**9}.1"
    async with sessionmaker() as session:
        incident = Incident(
            status="new", channel="call", priority=3, origin_linkedid=uid, created_by="tests"
        )
        session.add(incident)
        await session.flush()
        call = Call(
            uniqueid=uid,
            linkedid=uid,
            caller_number=caller_number,
            caller_e164=caller_number if caller_number and caller_number[0] == "+" else None,
            asserted_number=asserted,
            caller_id_available=caller_number is not None,
            state="queued",
            source="agi",
            queue="emergency-low",
            offered_at=now - timedelta(seconds=10),
            enqueued_at=now - timedelta(seconds=9),
            incident_id=incident.id,
        )
        session.add(call)
        await session.commit()
        return call


async def test_waiting_callers_show_their_flag_and_history_in_brief(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    flagged = f"+62813{uuid.uuid4().int % 10**7:07d}"
    await _history(sessionmaker, flagged, ["prank", "ghost", "emergency"])
    r = await api.post(
        "/v1/number-flags",
        headers=auth(keys[Role.OPERATOR]),
        json={"number": flagged, "kind": "prank", "reason": "tiga kali iseng", "hours": 5},
    )
    assert r.status_code == 201, r.text
    # The waiting call carries the number in its 0-form, and only as the asserted identity.
    local = "0" + flagged[3:]
    call = await _waiting(sessionmaker, "anonymous", asserted=local)
    anonymous = await _waiting(sessionmaker, None)
    short = await _waiting(sessionmaker, "112")
    control.entries = [
        QueueEntryState("emergency-low", 1, "PJSIP/carrier-1", call.uniqueid, "anonymous", 9),
        QueueEntryState("emergency-low", 2, "PJSIP/carrier-2", anonymous.uniqueid, "", 8),
        QueueEntryState("emergency-low", 3, "PJSIP/carrier-3", short.uniqueid, "112", 7),
    ]
    r = await api.get("/v1/queue", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 200, r.text
    first, second, third = r.json()["waiting"]
    assert first["number"] == flagged
    assert first["flag"]["kind"] == "prank"
    assert first["flag"]["reason"] == "tiga kali iseng"
    expires = datetime.fromisoformat(first["flag"]["expires_at"])
    assert timedelta(hours=4, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=5)
    # Three earlier calls and this one; four incidents, two of them prank or silent.
    assert first["history"] == {"calls_total": 4, "incidents_total": 4, "false_calls": 2}
    # Callers without a number of their own share no history and no flag.
    for other in (second, third):
        assert (other["number"], other["flag"], other["history"]) == (None, None, None)


async def test_queue_enrichment_is_one_query_however_many_wait(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    async def statements_for(n: int) -> int:
        calls = []
        for _ in range(n):
            number = f"+62814{uuid.uuid4().int % 10**7:07d}"
            await _history(sessionmaker, number, ["prank"])
            calls.append(await _waiting(sessionmaker, number))
        control.entries = [
            QueueEntryState("emergency", i, "PJSIP/c", c.uniqueid, c.caller_number or "", 5)
            for i, c in enumerate(calls, start=1)
        ]
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            r = await api.get("/v1/queue", headers=auth(keys[Role.OPERATOR]))
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        assert r.status_code == 200, r.text
        # Each number's own counts: one earlier prank call and incident, and the waiting one.
        assert [
            (w["history"]["calls_total"], w["history"]["incidents_total"])
            for w in r.json()["waiting"]
        ] == [(2, 2)] * n
        return len(statements)

    one, six = await statements_for(1), await statements_for(6)
    assert 0 < one == six


async def test_overflow_destinations_in_the_queue_are_not_listed_as_operators(
    api: httpx.AsyncClient, keys: dict[Role, str], control: FakeControl
) -> None:
    # A supervisor's phone as overflow target: a queue member whose state interface is the
    # phone (PJSIP/9001) and whose name marks it.
    control.queues["emergency"] = {
        "PJSIP/9001": QueueMemberState(
            "emergency", "PJSIP/9001", "overflow:9001", "not_in_use", False, "", False
        ),
        "Local/+62215550112@siaga112-overflow/n": QueueMemberState(
            "emergency",
            "Local/+62215550112@siaga112-overflow/n",
            "overflow:+62215550112",
            "not_in_use",
            False,
            "",
            False,
        ),
    }
    sup = auth(keys[Role.SUPERVISOR])
    await api.post("/v1/operators", headers=sup, json={"extension": "7303", "name": "Indah"})
    await api.post("/v1/operators/7303/login", headers=sup)
    body = (await api.get("/v1/queue", headers=sup)).json()
    listed = [ext for exts in body["operators_by_state"].values() for ext in exts]
    assert "7303" in body["operators_by_state"]["idle"]
    assert not [ext for ext in listed if "9001" in ext or "622155" in ext], listed


async def test_readers_within_the_snapshot_time_share_one_computation_each_audited(
    shared: tuple[httpx.AsyncClient, Clock],
    settings: Settings,
    keys: dict[Role, str],
    control: FakeControl,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    api, clock = shared
    call = await add_call(sessionmaker, state="queued", priority=1, waited_s=40)
    control.entries = [
        QueueEntryState("emergency", 1, "PJSIP/c", call.uniqueid, "+6281299900011", 42)
    ]
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    first = await api.get("/v1/queue", headers=auth(keys[Role.OPERATOR]))
    assert first.status_code == 200, first.text
    control.entries = []
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        second = await api.get("/v1/queue", headers=auth(keys[Role.SUPERVISOR]))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    # The same snapshot for the second reader, not computed again ...
    assert second.json() == first.json()
    assert statements
    assert not [s for s in statements if "FROM calls" in s]
    # ... but each reader's sight of the location audited as its own.
    async with sessionmaker() as session:
        actors = (
            await session.scalars(
                select(AuditEvent.actor)
                .where(AuditEvent.action == "location.read", AuditEvent.entity_type == "queue")
                .order_by(AuditEvent.id)
            )
        ).all()
    assert len(actors) == 2
    assert actors[0] != actors[1]
    # Past the snapshot's time the queue is read again.
    clock.now += settings.api.queue_snapshot_s
    third = await api.get("/v1/queue", headers=auth(keys[Role.OPERATOR]))
    assert third.json()["waiting"] == []
