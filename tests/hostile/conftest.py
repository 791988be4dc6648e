"""The hostile-input suite's world: one of everything the API's paths name (an incident, a call,
a location, a dispatch, an operator, a flag), keys of every role and of two agencies, and a
fingerprint of every table to prove that a refused request stored nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.agencies.service import agency_ref
from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.models import Call
from siaga112.config import ApiSettings, Settings
from siaga112.db.base import Base
from siaga112.incidents.models import Incident
from siaga112.metrics import Metrics
from tests.conftest import auth

Sessions = async_sessionmaker[AsyncSession]


async def fingerprint(connection: AsyncConnection) -> dict[str, str]:
    """An md5 over each table's rows (in a stable order), read inside the test's transaction:
    what a refused request must leave as it was."""
    tables = sorted(Base.metadata.tables)
    # Table names come from the ORM's metadata, not from input.
    template = (
        "SELECT '{0}', md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM \"{0}\" t"
    )
    parts = [template.format(name) for name in tables]
    rows = (await connection.execute(text(" UNION ALL ".join(parts)))).all()
    return {str(r[0]): str(r[1]) for r in rows}


@dataclass
class World:
    client: httpx.AsyncClient
    connection: AsyncConnection
    keys: dict[str, dict[str, str]]
    ids: dict[str, Any] = field(default_factory=dict)

    async def fingerprint(self) -> dict[str, str]:
        return await fingerprint(self.connection)


async def _key(
    sessions: Sessions, role: Role, agency_code: str | None = None, **kwargs: Any
) -> dict[str, str]:
    async with sessions() as session:
        if agency_code is not None:
            kwargs["agency"] = await agency_ref(session=session, code=agency_code)
        created = await create_key(
            session=session,
            name=f"hostile-{role.value}",
            role=role,
            actor=system_actor("hostile"),
            **kwargs,
        )
        await session.commit()
    return auth(created.raw)


@pytest.fixture
async def world(
    settings: Settings,
    engine: AsyncEngine,
    connection: AsyncConnection,
    sessionmaker: Sessions,
) -> AsyncIterator[World]:
    # The failed-authentication limit is not under test here (tests/integration/api).
    conf = settings.model_copy(update={"api": ApiSettings(auth_failures_max=10**6)})
    app = create_app(conf, engine=engine, sessionmaker=sessionmaker, metrics=Metrics())

    keys = {
        role.value: await _key(sessionmaker, role)
        for role in (Role.ADMIN, Role.SUPERVISOR, Role.INTEGRATOR)
    }
    keys["operator"] = await _key(sessionmaker, Role.OPERATOR, operator_extension="7001")
    keys["operator_unbound"] = await _key(sessionmaker, Role.OPERATOR)
    keys["agency_damkar"] = await _key(sessionmaker, Role.AGENCY, agency_code="damkar")
    keys["agency_polri"] = await _key(sessionmaker, Role.AGENCY, agency_code="polri")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://siaga112.test"
    ) as client:
        w = World(client, connection, keys)
        await _populate(w, sessionmaker)
        yield w


async def _populate(w: World, sessions: Sessions) -> None:
    admin = w.keys["admin"]
    r = await w.client.post(
        "/v1/incidents",
        headers=admin,
        json={"channel": "walk_in", "category": "kebakaran", "summary": "Gudang terbakar"},
    )
    assert r.status_code == 201, r.text
    w.ids["incident_id"] = r.json()["id"]
    r = await w.client.post(
        "/v1/incidents", headers=admin, json={"channel": "walk_in", "category": "kebakaran"}
    )
    w.ids["other_incident_id"] = r.json()["id"]
    r = await w.client.post(
        f"/v1/incidents/{w.ids['incident_id']}/locations",
        headers=admin,
        json={"lat": -6.2, "lon": 106.9, "radius_m": 30},
    )
    assert r.status_code == 201, r.text
    w.ids["location_id"] = r.json()["id"]
    r = await w.client.post(
        f"/v1/incidents/{w.ids['incident_id']}/dispatches",
        headers=admin,
        json={"agencies": ["damkar"]},
    )
    assert r.status_code == 201, r.text
    w.ids["dispatch_id"] = r.json()["items"][0]["id"]
    agencies = (await w.client.get("/v1/agencies", headers=admin)).json()
    w.ids["agency_id"] = next(a["id"] for a in agencies if a["code"] == "damkar")
    r = await w.client.post(
        "/v1/operators", headers=admin, json={"extension": "7001", "name": "Operator Satu"}
    )
    assert r.status_code == 201, r.text
    w.ids["extension"] = "7001"
    r = await w.client.post(
        "/v1/number-flags",
        headers=admin,
        json={"number": "081234567890", "kind": "prank", "reason": "iseng", "hours": 1},
    )
    assert r.status_code == 201, r.text
    w.ids["flag_id"] = r.json()["id"]
    offered = datetime.now(UTC) - timedelta(minutes=5)
    uid = f"{offered.timestamp():.6f}.{uuid.uuid4().int % 10**6}"
    async with sessions() as session:
        incident = Incident(
            status="new",
            channel="call",
            priority=3,
            caller_number="+6281234567891",
            origin_linkedid=uid,
            created_by="hostile",
        )
        session.add(incident)
        await session.flush()
        call = Call(
            uniqueid=uid,
            linkedid=uid,
            caller_number="+6281234567891",
            caller_e164="+6281234567891",
            caller_id_available=True,
            state="abandoned",
            source="agi",
            queue="emergency",
            outcome="abandoned",
            offered_at=offered,
            ended_at=offered + timedelta(seconds=20),
            incident_id=incident.id,
        )
        session.add(call)
        await session.commit()
        w.ids["call_id"] = str(call.id)
