"""Caller history by number: every stored form of a number matches, classifications are counted,
anonymous callers are refused rather than lumped together, every read is audited, agency keys
may not read it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident
from tests.conftest import auth
from tests.integration.dispatch.conftest import make_key

NUMBER = "+6281299900001"
OTHER = "+6281299900002"
T0 = datetime(2031, 7, 1, 2, 0, tzinfo=UTC)


@dataclass(frozen=True)
class World:
    anonymous_call: uuid.UUID
    asserted_call: uuid.UUID
    newest_call: uuid.UUID
    walk_in: int
    emergency: int
    anonymous: int


def _call(
    minutes: int,
    *,
    caller_number: str | None,
    caller_e164: str | None,
    asserted: str | None = None,
    available: bool = True,
    incident: Incident | None = None,
    state: str = "ended",
    outcome: str | None = "answered",
) -> Call:
    uid = f"h.{uuid.uuid4().hex[:12]}"
    return Call(
        id=uuid.uuid4(),
        uniqueid=uid,
        linkedid=uid,
        caller_number=caller_number,
        caller_e164=caller_e164,
        asserted_number=asserted,
        caller_id_available=available,
        source="agi",
        state=state,
        outcome=outcome,
        offered_at=T0 + timedelta(minutes=minutes),
        incident_id=incident.id if incident else None,
    )


def _incident(minutes: int, classification: str | None, number: str | None) -> Incident:
    at = T0 + timedelta(minutes=minutes)
    return Incident(
        status="closed",
        priority=3,
        channel="call",
        classification=classification,
        caller_number=number,
        created_by="tests",
        created_at=at,
        updated_at=at,
    )


@pytest.fixture
async def world(sessionmaker: async_sessionmaker) -> World:  # type: ignore[type-arg]
    async with sessionmaker() as session:
        prank = _incident(0, "prank", NUMBER)
        ghost = _incident(10, "ghost", NUMBER)
        emergency = _incident(20, "emergency", NUMBER)
        other = _incident(30, "prank", OTHER)
        anonymous = _incident(40, "prank", None)
        walk_in = Incident(
            status="new",
            priority=3,
            channel="walk_in",
            caller_number="081299900001",
            created_by="tests",
            created_at=T0 + timedelta(minutes=50),
            updated_at=T0 + timedelta(minutes=50),
        )
        session.add_all([prank, ghost, emergency, other, anonymous, walk_in])
        await session.flush()
        # The same number stored three ways: E.164 caller ID, 0-form caller ID without E.164,
        # and only as the network-asserted identity of a restricted call.
        newest = _call(
            20,
            caller_number="081299900001",
            caller_e164=NUMBER,
            incident=emergency,
            state="queued",
            outcome=None,
        )
        asserted = _call(
            10,
            caller_number="anonymous",
            caller_e164=None,
            asserted="6281299900001",
            available=False,
            incident=ghost,
            outcome="abandoned",
        )
        session.add_all(
            [
                _call(0, caller_number="6281299900001", caller_e164=None, incident=prank),
                asserted,
                newest,
                _call(30, caller_number="081299900002", caller_e164=OTHER, incident=other),
            ]
        )
        anonymous_call = _call(
            40, caller_number="anonymous", caller_e164=None, available=False, incident=anonymous
        )
        session.add(anonymous_call)
        await session.commit()
        return World(
            anonymous_call.id, asserted.id, newest.id, walk_in.id, emergency.id, anonymous.id
        )


@pytest.mark.parametrize("form", [NUMBER, "6281299900001", "081299900001"])
async def test_every_form_of_the_number_gives_the_same_history(
    client: httpx.AsyncClient, keys: dict[Role, str], world: World, form: str
) -> None:
    r = await client.get(f"/v1/callers/{form}/history", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["number"] == NUMBER
    assert body["calls_total"] == 3
    assert body["incidents_total"] == 4
    assert body["classifications"] == {
        "emergency": 1,
        "information": 0,
        "prank": 1,
        "ghost": 1,
        "test": 0,
        "duplicate": 0,
        "unclassified": 1,
    }
    assert [c["offered_at"] for c in body["calls"]] == [
        (T0 + timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (20, 10, 0)
    ]
    assert body["calls"][0]["state"] == "queued"
    assert body["calls"][1]["outcome"] == "abandoned"
    assert body["incidents"][0]["id"] == world.walk_in
    assert body["last_seen"] == (T0 + timedelta(minutes=50)).isoformat().replace("+00:00", "Z")


async def test_limit_lists_fewer_but_counts_all(
    client: httpx.AsyncClient, keys: dict[Role, str], world: World
) -> None:
    r = await client.get(
        f"/v1/callers/{NUMBER}/history", headers=auth(keys[Role.OPERATOR]), params={"limit": 1}
    )
    body = r.json()
    assert (len(body["calls"]), len(body["incidents"])) == (1, 1)
    assert (body["calls_total"], body["incidents_total"]) == (3, 4)


@pytest.mark.parametrize("word", ["anonymous", "Anonymous", "restricted", "unknown", "private"])
async def test_anonymous_callers_are_refused_not_lumped_together(
    client: httpx.AsyncClient, keys: dict[Role, str], world: World, word: str
) -> None:
    r = await client.get(f"/v1/callers/{word}/history", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 422
    assert r.json()["code"] == "caller_id_unavailable"


async def test_not_a_number_is_a_validation_error(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    r = await client.get("/v1/callers/12ab34/history", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"


async def test_history_of_a_waiting_call(
    client: httpx.AsyncClient, keys: dict[Role, str], world: World
) -> None:
    h = auth(keys[Role.OPERATOR])
    r = await client.get(f"/v1/calls/{world.newest_call}/caller-history", headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["number"], r.json()["calls_total"]) == (NUMBER, 3)
    # A restricted call is looked up by its network-asserted number.
    r = await client.get(f"/v1/calls/{world.asserted_call}/caller-history", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["number"] == NUMBER
    # An anonymous call without one has no history, and says so with a stable code.
    r = await client.get(f"/v1/calls/{world.anonymous_call}/caller-history", headers=h)
    assert r.status_code == 422
    assert r.json()["code"] == "caller_id_unavailable"
    r = await client.get(f"/v1/calls/{uuid.uuid4()}/caller-history", headers=h)
    assert r.status_code == 404


async def test_every_read_is_audited(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    world: World,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    await client.get("/v1/callers/081299900001/history", headers=auth(keys[Role.INTEGRATOR]))
    await client.get(
        f"/v1/calls/{world.newest_call}/caller-history", headers=auth(keys[Role.OPERATOR])
    )
    async with sessionmaker() as session:
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.action == "caller.history.read",
                    # Other tests (e2e) commit their own reads: only this number's count.
                    AuditEvent.entity_id == NUMBER,
                )
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [(e.actor, e.entity_type, e.entity_id) for e in events] == [
        ("key:test-integrator", "caller", NUMBER),
        ("key:test-operator", "caller", NUMBER),
    ]
    assert events[0].after == {"calls": 3, "incidents": 4, "call_id": None}
    assert events[1].after is not None
    assert events[1].after["call_id"] == str(world.newest_call)


async def test_lists_filtered_by_a_callers_number_are_audited_like_the_history(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    world: World,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    h = auth(keys[Role.INTEGRATOR])
    for path in ("/v1/calls", "/v1/incidents"):
        r = await client.get(path, headers=h, params={"caller_number": "081299900001"})
        assert r.status_code == 200, r.text
        assert r.json()["items"]
    # Lists without the filter are no caller's history.
    assert (await client.get("/v1/calls", headers=h)).status_code == 200
    async with sessionmaker() as session:
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "caller.history.read", AuditEvent.entity_id == NUMBER)
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [(e.actor, (e.after or {}).get("via")) for e in events] == [
        ("key:test-integrator", "calls.list"),
        ("key:test-integrator", "incidents.list"),
    ]


async def test_agency_keys_may_not_read_caller_history(
    client: httpx.AsyncClient,
    world: World,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = await make_key(sessionmaker, Role.AGENCY, "polri")
    r = await client.get(f"/v1/callers/{NUMBER}/history", headers=auth(key))
    assert r.status_code == 403
    r = await client.get(f"/v1/calls/{world.newest_call}/caller-history", headers=auth(key))
    assert r.status_code == 403
    assert (await client.get(f"/v1/callers/{NUMBER}/history")).status_code == 401


async def test_incident_detail_carries_the_callers_history_in_brief(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    world: World,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    h = auth(keys[Role.OPERATOR])
    r = await client.get(f"/v1/incidents/{world.emergency}", headers=h)
    assert r.status_code == 200, r.text
    brief = r.json()["caller_history"]
    assert (brief["number"], brief["calls_total"], brief["incidents_total"]) == (NUMBER, 3, 4)
    assert (brief["classifications"]["prank"], brief["classifications"]["ghost"]) == (1, 1)
    # The other incidents, newest first; this one is not its own history.
    assert [p["classification"] for p in brief["last_classifications"]] == [None, "ghost", "prank"]
    assert world.emergency not in [p["incident_id"] for p in brief["last_classifications"]]
    # An anonymous caller's incident has none, and reads nobody's.
    r = await client.get(f"/v1/incidents/{world.anonymous}", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["caller_history"] is None
    async with sessionmaker() as session:
        events = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "caller.history.read",
                    # Other tests (e2e) commit their own reads: only this number's count.
                    AuditEvent.entity_id == NUMBER,
                )
            )
        ).all()
    assert [(e.entity_id, (e.after or {}).get("incident_id")) for e in events] == [
        (NUMBER, world.emergency)
    ]
    # Read again without it (a console that shows it already): not read, not audited again.
    r = await client.get(f"/v1/incidents/{world.emergency}?caller_history=false", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["caller_history"] is None
    assert r.json()["id"] == world.emergency
    async with sessionmaker() as session:
        again = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "caller.history.read", AuditEvent.entity_id == NUMBER
                )
            )
        ).all()
    assert len(again) == 1


@pytest.mark.parametrize("short", ["112", "1500", "14045", "1500123"])
async def test_short_codes_are_not_a_callers_number(
    client: httpx.AsyncClient, keys: dict[Role, str], short: str
) -> None:
    r = await client.get(f"/v1/callers/{short}/history", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "caller_id_unavailable"


async def test_calls_with_a_short_code_caller_id_are_not_lumped_together(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    # Two unrelated callers whose network put the placeholder "112" where the number goes.
    async with sessionmaker() as session:
        first = _incident(60, "prank", "112")
        second = _incident(70, None, "112")
        session.add_all([first, second])
        await session.flush()
        waiting = _call(
            70,
            caller_number="112",
            caller_e164="112",
            incident=second,
            state="queued",
            outcome=None,
        )
        session.add_all(
            [_call(60, caller_number="112", caller_e164="112", incident=first), waiting]
        )
        await session.commit()
    h = auth(keys[Role.OPERATOR])
    r = await client.get(f"/v1/calls/{waiting.id}/caller-history", headers=h)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "caller_id_unavailable"
    r = await client.get(f"/v1/incidents/{second.id}", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["caller_history"] is None
    async with sessionmaker() as session:
        reads = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "caller.history.read", AuditEvent.entity_id == "112"
                )
            )
        ).all()
    assert reads == []
