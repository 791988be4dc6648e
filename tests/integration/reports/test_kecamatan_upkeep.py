"""An incident's kecamatan follows its address and the locations that name one, so the reports
group by it without parsing at read time."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.incidents.models import Incident
from siaga112.locations.service import add_location
from siaga112.locations.sources import LocationSource
from tests.conftest import auth


async def _kecamatan(client: httpx.AsyncClient, key: str, incident_id: int) -> str | None:
    r = await client.get(f"/v1/incidents/{incident_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    value: str | None = r.json()["kecamatan"]
    return value


async def test_address_sets_and_changes_the_kecamatan(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    key = keys[Role.OPERATOR]
    r = await client.post(
        "/v1/incidents",
        headers=auth(key),
        json={"channel": "walk_in", "address": "Jl. Raya Jatiasih 10, Kec. Jatiasih, Bekasi"},
    )
    assert r.status_code == 201, r.text
    inc = r.json()
    assert inc["kecamatan"] == "Jatiasih"
    r = await client.patch(
        f"/v1/incidents/{inc['id']}",
        headers=auth(key),
        json={"address": "Jl. Cakung, kecamatan cilincing, Jakarta Utara"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["kecamatan"] == "Cilincing"
    # An address without one, and no location naming one: unknown again.
    r = await client.patch(
        f"/v1/incidents/{inc['id']}", headers=auth(key), json={"address": "Jl. Mawar 3"}
    )
    assert r.json()["kecamatan"] is None


async def test_locations_give_the_kecamatan_when_the_address_does_not(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = keys[Role.OPERATOR]
    r = await client.post("/v1/incidents", headers=auth(key), json={"channel": "radio"})
    incident_id = r.json()["id"]
    assert r.json()["kecamatan"] is None
    # A PIDF-LO civic address: A3 is the kecamatan.
    async with sessionmaker() as session:
        await add_location(
            session=session,
            call_id=None,
            incident_id=incident_id,
            source=LocationSource.PIDF_LO,
            lat=None,
            lon=None,
            radius_m=None,
            confidence=None,
            method="Manual",
            observed_at=datetime.now(UTC),
            raw={"parsed": {"civic": {"country": "ID", "A2": "Kota Bekasi", "A3": "Jatiasih"}}},
            address="Kec. Jatiasih, Kota Bekasi",
            actor=system_actor("tests"),
        )
        await session.commit()
    assert await _kecamatan(client, key, incident_id) == "Jatiasih"
    # An operator-entered, confirmed location naming another one takes precedence.
    r = await client.post(
        f"/v1/incidents/{incident_id}/locations",
        headers=auth(key),
        json={"lat": -6.30, "lon": 106.98, "address": "Jl. Pekayon, Kec. Bekasi Selatan"},
    )
    assert r.status_code == 201, r.text
    assert await _kecamatan(client, key, incident_id) == "Bekasi Selatan"
    # The operator's own address wins over every location.
    await client.patch(
        f"/v1/incidents/{incident_id}",
        headers=auth(key),
        json={"address": "Kecamatan Rawalumbu, Bekasi"},
    )
    assert await _kecamatan(client, key, incident_id) == "Rawalumbu"
    async with sessionmaker() as session:
        row = await session.get(Incident, incident_id)
        assert row is not None
        assert row.kecamatan == "Rawalumbu"


async def test_every_kecamatan_change_is_on_the_timeline_and_audited(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = keys[Role.OPERATOR]
    r = await client.post("/v1/incidents", headers=auth(key), json={"channel": "radio"})
    incident_id = r.json()["id"]
    async with sessionmaker() as session:
        # A PIDF-LO civic address naming the kecamatan (A3), added by the telephony side.
        await add_location(
            session=session,
            call_id=None,
            incident_id=incident_id,
            source=LocationSource.PIDF_LO,
            lat=-6.3,
            lon=106.97,
            radius_m=30,
            confidence=None,
            method="gps",
            observed_at=datetime.now(UTC),
            raw={"parsed": {"civic": {"country": "ID", "A3": "Jatiasih"}}},
            address=None,
            actor=system_actor("locations"),
        )
        await session.commit()
    r = await client.patch(
        f"/v1/incidents/{incident_id}",
        headers=auth(key),
        json={"address": "Jl. Cakung, Kec. Cilincing, Jakarta Utara"},
    )
    assert r.json()["kecamatan"] == "Cilincing"
    # An address change that names the same kecamatan changes nothing and records nothing.
    r = await client.patch(
        f"/v1/incidents/{incident_id}",
        headers=auth(key),
        json={"address": "Jl. Cakung 2, Kec. Cilincing, Jakarta Utara"},
    )
    timeline = (await client.get(f"/v1/incidents/{incident_id}/timeline", headers=auth(key))).json()
    changes = [(e["actor"], e["data"]) for e in timeline if e["kind"] == "kecamatan_changed"]
    assert changes == [
        ("system:locations", {"from": None, "to": "Jatiasih"}),
        ("key:test-operator", {"from": "Jatiasih", "to": "Cilincing"}),
    ]
    async with sessionmaker() as session:
        audit = (
            await session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.action == "incident.kecamatan",
                    AuditEvent.entity_id == str(incident_id),
                )
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [(e.actor, e.before, e.after) for e in audit] == [
        ("system:locations", {"kecamatan": None}, {"kecamatan": "Jatiasih"}),
        ("key:test-operator", {"kecamatan": "Jatiasih"}, {"kecamatan": "Cilincing"}),
    ]
