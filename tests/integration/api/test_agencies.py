"""Agencies are seeded by the migration and editable by supervisors, with an audit trail."""

from __future__ import annotations

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from tests.conftest import auth

SEEDED = {
    "damkar",
    "bpbd",
    "dinkes",
    "rumah_sakit",
    "satpol_pp",
    "polri",
    "tni",
    "pmi",
    "dp3a",
    "dishub",
}


async def test_seeded_agencies_are_listed(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    r = await client.get("/v1/agencies", headers=auth(keys[Role.INTEGRATOR]))
    assert r.status_code == 200
    assert {a["code"] for a in r.json()} >= SEEDED


async def test_supervisor_creates_and_updates_agency_with_audit(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    h = auth(keys[Role.SUPERVISOR])
    r = await client.post(
        "/v1/agencies", headers=h, json={"code": "basarnas", "name": "Basarnas", "kind": "disaster"}
    )
    assert r.status_code == 201, r.text
    agency = r.json()
    r = await client.patch(
        f"/v1/agencies/{agency['id']}", headers=h, json={"phone": "0215551234", "active": False}
    )
    assert r.status_code == 200
    assert r.json()["phone"] == "0215551234"
    assert r.json()["active"] is False
    async with sessionmaker() as session:
        events = (
            await session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.entity_type == "agency", AuditEvent.entity_id == str(agency["id"])
                )
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [e.action for e in events] == ["agency.create", "agency.update"]
    assert events[1].before is not None
    assert events[1].before["active"] is True
    assert events[1].after is not None
    assert events[1].after["active"] is False
    assert events[1].actor == "key:test-supervisor"


async def test_duplicate_agency_code_is_409(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    r = await client.post(
        "/v1/agencies",
        headers=auth(keys[Role.ADMIN]),
        json={"code": "damkar", "name": "Another", "kind": "fire"},
    )
    assert r.status_code == 409
    assert r.json()["code"] == "conflict"


async def test_unknown_agency_is_404(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    r = await client.patch(
        "/v1/agencies/999999", headers=auth(keys[Role.ADMIN]), json={"name": "x"}
    )
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
