"""The screen pop's first read, GET /v1/incidents/{id}/brief: the incident's fields and its
calls in one statement, and nothing that tells where the caller is (no locations, no raw
network headers), so nothing is audited or written; the full read still is."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from tests.conftest import auth
from tests.integration.locations.conftest import TEST_PANI, record_call

Sessions = async_sessionmaker[AsyncSession]


async def _audits(sessionmaker: Sessions) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_brief_has_the_panel_fields_and_calls_without_location(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    async with sessionmaker() as session:
        call = await record_call(session, f"brief-{uuid.uuid4().hex[:8]}", pani=TEST_PANI)
        await session.commit()
    key = keys[Role.OPERATOR]
    r = await client.patch(
        f"/v1/incidents/{call.incident_id}",
        headers=auth(key),
        json={"address": "Jl. Ahmad Yani", "landmark": "Depan Summarecon"},
    )
    assert r.status_code == 200, r.text
    before = await _audits(sessionmaker)

    r = await client.get(f"/v1/incidents/{call.incident_id}/brief", headers=auth(key))
    assert r.status_code == 200, r.text
    brief = r.json()
    assert await _audits(sessionmaker) == before  # nothing about where the caller is
    full = (await client.get(f"/v1/incidents/{call.incident_id}", headers=auth(key))).json()
    assert await _audits(sessionmaker) > before  # the full read is on record
    for field in (
        "id",
        "status",
        "priority",
        "address",
        "landmark",
        "caller_number",
        "allowed_statuses",
        "kecamatan",
        "summary",
    ):
        assert brief[field] == full[field], field
    [c] = brief["calls"]
    [f] = full["calls"]
    assert c["id"] == f["id"] == str(call.call_id)
    assert c["uniqueid"] == f["uniqueid"]  # what the stream's call events name the call by
    assert (c["caller_e164"], c["caller_id_available"]) == ("+6281234567890", True)
    assert f["pani_raw"] == TEST_PANI  # the full read has the network's location header
    assert "pani_raw" not in c
    assert "geolocation_raw" not in c
    for part in ("locations", "best_location", "timeline", "caller_history"):
        assert part not in brief


async def test_brief_of_an_incident_without_calls_and_of_none(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    key = keys[Role.OPERATOR]
    r = await client.post("/v1/incidents", headers=auth(key), json={"channel": "radio"})
    assert r.status_code == 201, r.text
    r = await client.get(f"/v1/incidents/{r.json()['id']}/brief", headers=auth(key))
    assert r.status_code == 200, r.text
    assert r.json()["calls"] == []
    r = await client.get("/v1/incidents/999999999/brief", headers=auth(key))
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
