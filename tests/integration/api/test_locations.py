"""Caller locations through the API: history per incident and per call with provenance, best
location in the incident detail, GeoJSON, operator entry and confirmation (who, and never
silently replaced), roles, and every read audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.locations.models import Location
from siaga112.locations.service import add_location
from siaga112.locations.sources import LocationSource
from tests.conftest import auth
from tests.integration.locations.conftest import record_call

Sessions = async_sessionmaker[AsyncSession]


async def _call_with_locations(sessionmaker: Sessions) -> tuple[int, uuid.UUID]:
    """A call with a tower fix (1.2 km) and, 20 s later, an AML fix (12 m)."""
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    async with sessionmaker() as session:
        call = await record_call(session, f"api-{uuid.uuid4().hex[:8]}")
        for source, radius, dt, method in (
            (LocationSource.NETWORK_CELL, 1200.0, 0, "cell-lte"),
            (LocationSource.AML_SMS, 12.0, 20, "gnss"),
        ):
            await add_location(
                session=session,
                call_id=call.call_id,
                incident_id=None,
                source=source,
                lat=-6.28,
                lon=106.97,
                radius_m=radius,
                confidence=None,
                method=method,
                observed_at=t0 + timedelta(seconds=dt),
                raw={"test": True},
                address=None,
                actor=system_actor("tests"),
            )
        await session.commit()
        return call.incident_id, call.call_id


async def _reads(sessionmaker: Sessions, entity_type: str, entity_id: str) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.action == "location.read",
                    AuditEvent.entity_type == entity_type,
                    AuditEvent.entity_id == entity_id,
                )
            )
            or 0
        )


async def test_incident_history_lists_provenance_and_best_and_audits_the_read(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    r = await client.get(
        f"/v1/incidents/{incident_id}/locations", headers=auth(keys[Role.INTEGRATOR])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["source"] for i in body["items"]] == ["network_cell", "aml_sms"]
    assert body["items"][0]["raw"] == {"test": True}
    assert body["best"]["location"]["source"] == "aml_sms"
    assert body["best"]["reason"] == "most_precise_recent"
    assert await _reads(sessionmaker, "incident", str(incident_id)) == 1


async def test_call_history_and_geojson_are_audited(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    _, call_id = await _call_with_locations(sessionmaker)
    key = keys[Role.OPERATOR]
    r = await client.get(f"/v1/calls/{call_id}/locations", headers=auth(key))
    assert r.status_code == 200
    assert len(r.json()["items"]) == 2
    g = await client.get(
        f"/v1/calls/{call_id}/locations", params={"format": "geojson"}, headers=auth(key)
    )
    assert g.status_code == 200
    assert g.headers["content-type"].startswith("application/geo+json")
    assert g.json()["type"] == "FeatureCollection"
    g2 = await client.get(f"/v1/calls/{call_id}/locations.geojson", headers=auth(key))
    assert g2.json() == g.json()
    assert await _reads(sessionmaker, "call", str(call_id)) == 3


async def test_geojson_features_are_lon_lat_points_with_best_marked(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    key = keys[Role.OPERATOR]
    await client.post(
        f"/v1/incidents/{incident_id}/locations",
        headers=auth(key),
        json={"address": "Jl. Raya Jatiasih 10", "confirm": False},
    )
    r = await client.get(f"/v1/incidents/{incident_id}/locations.geojson", headers=auth(key))
    features: list[dict[str, Any]] = r.json()["features"]
    assert len(features) == 3
    assert features[0]["geometry"] == {"type": "Point", "coordinates": [106.97, -6.28]}
    assert [f["properties"]["best"] for f in features] == [False, True, False]
    assert features[2]["geometry"] is None
    assert features[2]["properties"]["address"] == "Jl. Raya Jatiasih 10"


async def test_operator_location_is_confirmed_by_default_and_wins_over_newer_fixes(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, call_id = await _call_with_locations(sessionmaker)
    key = keys[Role.OPERATOR]
    r = await client.post(
        f"/v1/incidents/{incident_id}/locations",
        headers=auth(key),
        json={
            "lat": -6.3,
            "lon": 106.9,
            "address": "depan Masjid Al-Ikhlas",
            "call_id": str(call_id),
        },
    )
    assert r.status_code == 201, r.text
    entered = r.json()
    assert entered["source"] == "operator"
    assert entered["confirmed"] is True
    assert entered["confirmed_by"] == "key:test-operator"
    # A precise AML fix arriving later does not take its place: it is counted for review.
    async with sessionmaker() as session:
        await add_location(
            session=session,
            call_id=call_id,
            incident_id=None,
            source=LocationSource.AML_HTTPS,
            lat=-6.29,
            lon=106.95,
            radius_m=3,
            confidence=90,
            method="gps",
            observed_at=datetime.now(UTC) + timedelta(seconds=5),
            raw=None,
            address=None,
            actor=system_actor("aml"),
        )
        await session.commit()
    detail = (await client.get(f"/v1/incidents/{incident_id}", headers=auth(key))).json()
    assert detail["best_location"]["location"]["id"] == entered["id"]
    assert detail["best_location"]["reason"] == "confirmed"
    assert detail["best_location"]["newer_unconfirmed"] == 1
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds.count("location_added") == 4
    assert "location_confirmed" in kinds


async def test_confirming_another_location_records_who_and_what_it_supersedes(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    op_key, sup_key = keys[Role.OPERATOR], keys[Role.SUPERVISOR]
    first = (
        await client.post(
            f"/v1/incidents/{incident_id}/locations",
            headers=auth(op_key),
            json={"lat": -6.3, "lon": 106.9},
        )
    ).json()
    history = (
        await client.get(f"/v1/incidents/{incident_id}/locations", headers=auth(op_key))
    ).json()
    cell = next(i for i in history["items"] if i["source"] == "network_cell")
    r = await client.post(f"/v1/locations/{cell['id']}/confirm", headers=auth(sup_key))
    assert r.status_code == 200, r.text
    assert r.json()["confirmed_by"] == "key:test-supervisor"
    again = await client.post(f"/v1/locations/{cell['id']}/confirm", headers=auth(sup_key))
    assert again.status_code == 200
    detail = (await client.get(f"/v1/incidents/{incident_id}", headers=auth(op_key))).json()
    assert detail["best_location"]["location"]["id"] == cell["id"]
    confirmations = [e for e in detail["timeline"] if e["kind"] == "location_confirmed"]
    assert len(confirmations) == 2, "re-confirming the current one records nothing"
    assert confirmations[-1]["data"]["supersedes"] == [first["id"]]
    assert confirmations[-1]["actor"] == "key:test-supervisor"


async def test_integrator_may_read_but_not_add_or_confirm(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    key = keys[Role.INTEGRATOR]
    r = await client.post(
        f"/v1/incidents/{incident_id}/locations", headers=auth(key), json={"lat": 1, "lon": 2}
    )
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    r = await client.post(f"/v1/locations/{uuid.uuid4()}/confirm", headers=auth(key))
    assert r.status_code == 403


async def test_bad_input_and_missing_things_have_stable_codes(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    key = keys[Role.OPERATOR]
    url = f"/v1/incidents/{incident_id}/locations"
    r = await client.post(url, headers=auth(key), json={"lat": 91, "lon": 0})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = await client.post(url, headers=auth(key), json={"lat": 1, "lon": 2, "extra": 1})
    assert r.status_code == 422
    r = await client.post(url, headers=auth(key), json={"lat": 1})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = await client.post(url, headers=auth(key), json={})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = await client.post(
        url, headers=auth(key), json={"lat": 1, "lon": 2, "call_id": str(uuid.uuid4())}
    )
    assert r.status_code == 422
    r = await client.get("/v1/incidents/999999999/locations", headers=auth(key))
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await client.get(f"/v1/calls/{uuid.uuid4()}/locations", headers=auth(key))
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await client.post(f"/v1/locations/{uuid.uuid4()}/confirm", headers=auth(key))
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await client.get(url, params={"format": "kml"}, headers=auth(key))
    assert r.status_code == 422


async def test_location_without_coordinates_cannot_be_confirmed(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    key = keys[Role.OPERATOR]
    created = (
        await client.post(
            f"/v1/incidents/{incident_id}/locations",
            headers=auth(key),
            json={"address": "Gang Mawar", "confirm": False},
        )
    ).json()
    r = await client.post(f"/v1/locations/{created['id']}/confirm", headers=auth(key))
    assert (r.status_code, r.json()["code"]) == (422, "coordinates_required")


async def _location_count(sessionmaker: Sessions, incident_id: int) -> tuple[int, int]:
    """(locations of the incident, location.add audit events) right now."""
    async with sessionmaker() as session:
        locations = await session.scalar(
            select(func.count()).select_from(Location).where(Location.incident_id == incident_id)
        )
        audits = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "location.add")
        )
        return int(locations or 0), int(audits or 0)


async def test_confirming_an_address_without_coordinates_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    key = keys[Role.OPERATOR]
    before = await _location_count(sessionmaker, incident_id)
    r = await client.post(
        f"/v1/incidents/{incident_id}/locations",
        headers=auth(key),
        json={"address": "Gang Mawar 3, Jatiasih", "confirm": True},
    )
    assert (r.status_code, r.json()["code"]) == (422, "coordinates_required")
    assert r.json()["details"] == [{"field": "body.confirm"}]
    assert await _location_count(sessionmaker, incident_id) == before


async def test_address_only_operator_location_is_kept_unconfirmed_by_default(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    key = keys[Role.OPERATOR]
    r = await client.post(
        f"/v1/incidents/{incident_id}/locations",
        headers=auth(key),
        json={"address": "Gang Mawar 3, Jatiasih"},
    )
    assert r.status_code == 201, r.text
    entered = r.json()
    assert (entered["confirmed"], entered["lat"], entered["address"]) == (
        False,
        None,
        "Gang Mawar 3, Jatiasih",
    )
    detail = (await client.get(f"/v1/incidents/{incident_id}", headers=auth(key))).json()
    # The map point stays the precise AML fix, and says it is not operator-confirmed.
    assert detail["best_location"]["location"]["source"] == "aml_sms"
    assert detail["best_location"]["reason"] == "most_precise_recent"
    kinds = [e["kind"] for e in detail["timeline"]]
    assert "location_added" in kinds
    assert "location_confirmed" not in kinds


async def _audits(sessionmaker: Sessions, action: str, entity_id: str | None = None) -> list[Any]:
    async with sessionmaker() as session:
        stmt = select(AuditEvent.after).where(AuditEvent.action == action)
        if entity_id is not None:
            stmt = stmt.where(AuditEvent.entity_id == entity_id)
        return list(await session.scalars(stmt))


async def test_reads_that_find_no_location_are_audited_too(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    key = keys[Role.INTEGRATOR]
    async with sessionmaker() as session:
        call = await record_call(session, f"empty-{uuid.uuid4().hex[:8]}", pani=None)
        await session.commit()
    r = await client.get(f"/v1/incidents/{call.incident_id}/locations", headers=auth(key))
    assert (r.status_code, r.json()["items"]) == (200, [])
    r = await client.get(f"/v1/calls/{call.call_id}/locations.geojson", headers=auth(key))
    assert (r.status_code, r.json()["features"]) == (200, [])
    r = await client.get(f"/v1/incidents/{call.incident_id}", headers=auth(key))
    assert (r.status_code, r.json()["locations"]) == (200, [])
    assert await _reads(sessionmaker, "incident", str(call.incident_id)) == 2
    assert await _reads(sessionmaker, "call", str(call.call_id)) == 1
    before = len(await _audits(sessionmaker, "aml.read_unmatched"))
    r = await client.get(
        "/v1/aml/unmatched", params={"since": "2999-01-01T00:00:00Z"}, headers=auth(key)
    )
    assert (r.status_code, r.json()) == (200, [])
    after = await _audits(sessionmaker, "aml.read_unmatched")
    assert len(after) == before + 1
    assert {"messages": 0} in after


async def test_timeline_read_is_audited_as_a_location_read(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    incident_id, _ = await _call_with_locations(sessionmaker)
    key = keys[Role.INTEGRATOR]
    r = await client.get(f"/v1/incidents/{incident_id}/timeline", headers=auth(key))
    assert r.status_code == 200
    carried = [e for e in r.json() if e["kind"] == "location_added"]
    assert len(carried) == 2
    assert carried[0]["data"]["lat"] == -6.28
    reads = await _audits(sessionmaker, "location.read", str(incident_id))
    assert reads == [{"via": "timeline", "location_events": 2}]
