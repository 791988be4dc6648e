"""Every number filter takes the forms people type (0812..., 62812..., +62812..., with spaces
or dashes removed by the one normaliser), and finds the number in whichever column and form it
was stored."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident
from tests.conftest import auth

STORED = "+6281311112222"
T0 = datetime(2032, 3, 1, 1, 0, tzinfo=UTC)


@pytest.fixture
async def stored(sessionmaker: async_sessionmaker) -> tuple[uuid.UUID, int]:  # type: ignore[type-arg]
    async with sessionmaker() as session:
        incident = Incident(
            status="new", priority=3, channel="call", caller_number=STORED, created_by="tests",
            created_at=T0, updated_at=T0,
        )  # fmt: skip
        session.add(incident)
        await session.flush()
        uid = f"nf.{uuid.uuid4().hex[:12]}"
        call = Call(
            id=uuid.uuid4(), uniqueid=uid, linkedid=uid, caller_number=STORED,
            caller_e164=STORED, caller_id_available=True, source="agi", state="ended",
            offered_at=T0 + timedelta(seconds=1), incident_id=incident.id,
        )  # fmt: skip
        session.add(call)
        await session.commit()
        return call.id, incident.id


@pytest.mark.parametrize("typed", ["+6281311112222", "6281311112222", "081311112222"])
async def test_calls_and_incidents_are_found_by_the_forms_people_type(
    client: httpx.AsyncClient, keys: dict[Role, str], stored: tuple[uuid.UUID, int], typed: str
) -> None:
    call_id, incident_id = stored
    h = auth(keys[Role.SUPERVISOR])
    calls = await client.get("/v1/calls", params={"caller_number": typed}, headers=h)
    assert calls.status_code == 200, calls.text
    assert [c["id"] for c in calls.json()["items"]] == [str(call_id)]
    incidents = await client.get("/v1/incidents", params={"caller_number": typed}, headers=h)
    assert incidents.status_code == 200, incidents.text
    assert [i["id"] for i in incidents.json()["items"]] == [incident_id]


async def test_another_number_finds_nothing(
    client: httpx.AsyncClient, keys: dict[Role, str], stored: tuple[uuid.UUID, int]
) -> None:
    h = auth(keys[Role.SUPERVISOR])
    for path in ("/v1/calls", "/v1/incidents"):
        r = await client.get(path, params={"caller_number": "081311112223"}, headers=h)
        assert r.json()["items"] == []
