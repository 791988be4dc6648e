"""Hang up and blind transfer through the call-control protocol: only live calls, only to an
agency with a number, audited and on the incident timeline; nothing is kept when Asterisk
refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.agencies.models import Agency
from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.callcontrol.service import dial_digits
from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.incidents.models import IncidentEvent
from tests.conftest import auth
from tests.integration.api.test_operators import FakeControl
from tests.integration.api.test_queue import add_call


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


async def live_call(sessionmaker: async_sessionmaker, state: str = "answered") -> Call:  # type: ignore[type-arg]
    call = await add_call(sessionmaker, state=state, priority=2, waited_s=3)
    async with sessionmaker() as session:
        row: Call | None = await session.get(Call, call.id)
        assert row is not None
        row.channel = "PJSIP/carrier-00000001"
        await session.commit()
        return row


async def agency(sessionmaker: async_sessionmaker, phone: str | None) -> Agency:  # type: ignore[type-arg]
    async with sessionmaker() as session:
        row = Agency(code=f"test-{phone}", name="Damkar Kota", kind="fire", phone=phone)
        session.add(row)
        await session.commit()
        return row


def test_agency_phone_becomes_trunk_digits() -> None:
    assert dial_digits("+62 (21) 555-0113") == "62215550113"


async def test_transfer_redirects_caller_and_is_audited_and_on_timeline(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    call = await live_call(sessionmaker)
    target = await agency(sessionmaker, "+62 21 113")
    r = await api.post(
        f"/v1/calls/{call.id}/transfer",
        headers=auth(keys[Role.OPERATOR]),
        json={"agency_id": target.id},
    )
    assert r.status_code == 200, r.text
    assert r.json()["number"] == "6221113"
    assert control.actions == [
        ("redirect", "PJSIP/carrier-00000001", "siaga112-transfer", "6221113")
    ]
    async with sessionmaker() as session:
        audit = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "call.transfer", AuditEvent.entity_id == str(call.id)
            )
        )
        event = await session.scalar(
            select(IncidentEvent).where(
                IncidentEvent.incident_id == call.incident_id,
                IncidentEvent.kind == "call_transferred",
            )
        )
    assert audit is not None
    assert event is not None


async def test_transfer_refusals(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    h = auth(keys[Role.OPERATOR])
    ended = await live_call(sessionmaker, state="ended")
    no_phone = await agency(sessionmaker, None)
    with_phone = await agency(sessionmaker, "110")
    r = await api.post(f"/v1/calls/{ended.id}/transfer", headers=h, json={"agency_id": 1})
    assert r.status_code == 409
    call = await live_call(sessionmaker)
    r = await api.post(f"/v1/calls/{call.id}/transfer", headers=h, json={"agency_id": no_phone.id})
    assert r.status_code == 422
    r = await api.post(
        f"/v1/calls/{call.id}/transfer", headers=auth(keys[Role.INTEGRATOR]), json={"agency_id": 1}
    )
    assert r.status_code == 403
    control.fail = True
    r = await api.post(
        f"/v1/calls/{call.id}/transfer", headers=h, json={"agency_id": with_phone.id}
    )
    assert (r.status_code, r.json()["code"]) == (503, "telephony_unavailable")
    async with sessionmaker() as session:
        assert (
            await session.scalar(
                select(AuditEvent).where(
                    AuditEvent.action == "call.transfer", AuditEvent.entity_id == str(call.id)
                )
            )
            is None
        )


async def test_hangup_of_live_call(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    control: FakeControl,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    call = await live_call(sessionmaker, state="queued")
    r = await api.post(f"/v1/calls/{call.id}/hangup", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 200, r.text
    assert control.actions == [("hangup", "PJSIP/carrier-00000001")]
