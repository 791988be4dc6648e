"""The live queue: waiting callers from Asterisk enriched with call, incident priority and
location; the database when AMI is not reachable; operators grouped by state."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.incidents.models import Incident
from siaga112.locations.models import Location
from siaga112.telephony.call_control import QueueEntryState, QueueMemberState
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
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker, call_control=control)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c


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
