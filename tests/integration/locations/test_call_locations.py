"""Locations derived from a call's signalling: a known cell gives coordinates and radius, an
unknown or unparsable one still gives a row with what is known; each only once per call;
every location is on the incident's timeline and in the audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.service import system_actor
from siaga112.errors import InvalidRequest, NotFound
from siaga112.incidents.models import IncidentEvent
from siaga112.locations.cells import import_cells
from siaga112.locations.models import Location
from siaga112.locations.service import (
    add_location,
    locations_for_call,
    mark_locations_done,
    pending_location_jobs,
)
from siaga112.locations.sources import LocationSource
from tests.integration.locations.conftest import (
    TEST_CELL,
    TEST_PANI,
    driver,
    record_call,
    write_csv,
)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def cell_table(connection: AsyncConnection, tmp_path: Path) -> None:
    await import_cells(await driver(connection), write_csv(tmp_path / "c.csv", [TEST_CELL]))


@pytest.mark.usefixtures("cell_table")
async def test_known_cell_gives_coordinates_radius_timeline_and_audit(
    sessionmaker: Sessions,
) -> None:
    async with sessionmaker() as session:
        call = await record_call(session, f"loc-{uuid.uuid4().hex[:8]}")
        added = await locations_for_call(
            session=session,
            call_id=call.call_id,
            incident_id=call.incident_id,
            pani=TEST_PANI,
            geoloc_effective=None,
            geoloc_method=None,
            observed_at=datetime.now(UTC),
        )
        await session.commit()
        assert len(added) == 1
        loc = added[0]
        assert loc.source == "network_cell"
        assert loc.method == "cell-lte"
        assert (loc.lat, loc.lon, loc.radius_m) == (-6.28211, 106.97432, 1200.0)
        assert loc.incident_id == call.incident_id
        assert loc.raw is not None
        assert loc.raw["pani"]["cell"]["network"] == "Telkomsel"
        assert loc.raw["cell_tower"]["range_m"] == 1200
        kinds = (
            await session.scalars(
                select(IncidentEvent.kind).where(IncidentEvent.incident_id == call.incident_id)
            )
        ).all()
        assert "location_added" in kinds
        audit = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "location.add", AuditEvent.entity_id == str(loc.id)
            )
        )
        assert audit is not None
        assert audit.actor == "system:locations"


@pytest.mark.usefixtures("cell_table")
async def test_small_tower_range_is_raised_to_the_minimum_radius(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        call = await record_call(session, f"loc-{uuid.uuid4().hex[:8]}")
        [loc] = await locations_for_call(
            session=session,
            call_id=call.call_id,
            incident_id=call.incident_id,
            pani=TEST_PANI,
            geoloc_effective=None,
            geoloc_method=None,
            observed_at=datetime.now(UTC),
            min_radius_m=5000,
        )
        assert loc.radius_m == 5000


async def test_unknown_cell_keeps_network_and_area_without_coordinates(
    sessionmaker: Sessions,
) -> None:
    pani = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5108900FF1234567"
    async with sessionmaker() as session:
        call = await record_call(session, f"loc-{uuid.uuid4().hex[:8]}", pani=pani)
        [loc] = await locations_for_call(
            session=session,
            call_id=call.call_id,
            incident_id=call.incident_id,
            pani=pani,
            geoloc_effective=None,
            geoloc_method=None,
            observed_at=datetime.now(UTC),
        )
        assert (loc.lat, loc.lon, loc.radius_m) == (None, None, None)
        assert loc.raw is not None
        assert loc.raw["cell_tower"] is None
        assert loc.raw["pani"]["cell"]["network"] == "Indosat Ooredoo Hutchison (Three/H3I)"
        assert loc.raw["pani"]["cell"]["area"] == 0xFF
        assert loc.address is not None
        assert "TAC 255" in loc.address


async def test_unparsable_pani_is_kept_raw_with_reason(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        call = await record_call(session, f"loc-{uuid.uuid4().hex[:8]}", pani="junk;;=")
        [loc] = await locations_for_call(
            session=session,
            call_id=call.call_id,
            incident_id=call.incident_id,
            pani="junk;;=",
            geoloc_effective=None,
            geoloc_method=None,
            observed_at=datetime.now(UTC),
        )
        assert loc.method == "cell-unparsed"
        assert loc.raw is not None
        assert loc.raw["pani"]["raw"] == "junk;;="
        assert loc.raw["pani"]["reason"]


@pytest.mark.usefixtures("cell_table")
async def test_replayed_derivation_adds_nothing_twice_and_a_done_call_is_not_pending(
    sessionmaker: Sessions,
) -> None:
    async with sessionmaker() as session:
        call = await record_call(session, f"loc-{uuid.uuid4().hex[:8]}")
        for _ in range(2):
            await locations_for_call(
                session=session,
                call_id=call.call_id,
                incident_id=call.incident_id,
                pani=TEST_PANI,
                geoloc_effective=None,
                geoloc_method=None,
                observed_at=datetime.now(UTC),
            )
        rows = (
            await session.scalars(select(Location).where(Location.call_id == call.call_id))
        ).all()
        assert len(rows) == 1
        await mark_locations_done(session=session, call_id=call.call_id)
        pending = await pending_location_jobs(
            session=session,
            since=datetime.now(UTC) - timedelta(hours=1),
            before=datetime.now(UTC) + timedelta(minutes=1),
        )
        assert call.call_id not in [j.call_id for j in pending]


async def test_calls_never_located_are_pending_with_what_their_row_kept(
    sessionmaker: Sessions,
) -> None:
    effective = 'shape="Point",crs="2d",pos="-6.2 106.8"'
    async with sessionmaker() as session:
        call = await record_call(session, f"rec-{uuid.uuid4().hex[:8]}", geoloc_effective=effective)
        no_pani = await record_call(session, f"rec-{uuid.uuid4().hex[:8]}", pani=None)
        pending = {
            j.call_id: j
            for j in await pending_location_jobs(
                session=session,
                since=datetime.now(UTC) - timedelta(hours=1),
                before=datetime.now(UTC) + timedelta(minutes=1),
            )
        }
    job = pending[call.call_id]
    assert (job.pani, job.geoloc_effective, job.geoloc_method, job.incident_id) == (
        TEST_PANI,
        effective,
        "gps",
        call.incident_id,
    )
    assert job.aml_number == "+6281234567890"
    assert no_pani.call_id not in pending, "nothing to locate: never pending"


async def test_add_location_takes_the_incident_from_the_call(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        call = await record_call(session, f"aml-{uuid.uuid4().hex[:8]}")
        loc = await add_location(
            session=session,
            call_id=call.call_id,
            incident_id=None,
            source=LocationSource.AML_SMS,
            lat=-6.2,
            lon=106.8,
            radius_m=15,
            confidence=68,
            method="gnss",
            observed_at=datetime.now(UTC),
            raw={"text": 'A"ML=1;lt=-6.2;lg=106.8'},
            address=None,
            actor=system_actor("aml"),
        )
        assert loc.incident_id == call.incident_id
        assert loc.source == "aml_sms"


async def test_add_location_rejects_half_coordinates_and_unknown_call(
    sessionmaker: Sessions,
) -> None:
    async with sessionmaker() as session:
        common = {
            "incident_id": None,
            "source": LocationSource.AML_HTTPS,
            "radius_m": None,
            "confidence": None,
            "method": None,
            "observed_at": datetime.now(UTC),
            "raw": None,
            "address": None,
            "actor": system_actor("aml"),
        }
        with pytest.raises(InvalidRequest):
            await add_location(session=session, call_id=uuid.uuid4(), lat=1.0, lon=None, **common)  # type: ignore[arg-type]
        with pytest.raises(NotFound):
            await add_location(session=session, call_id=uuid.uuid4(), lat=1.0, lon=2.0, **common)  # type: ignore[arg-type]


async def test_resolved_pidf_location_is_stored_once_beside_the_cell(
    sessionmaker: Sessions,
) -> None:
    effective = 'shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"'
    async with sessionmaker() as session:
        call = await record_call(session, f"pidf-{uuid.uuid4().hex[:8]}")
        for _ in range(2):
            await locations_for_call(
                session=session,
                call_id=call.call_id,
                incident_id=call.incident_id,
                pani=TEST_PANI,
                geoloc_effective=effective,
                geoloc_method="gps",
                observed_at=datetime.now(UTC),
            )
        rows = (
            await session.scalars(select(Location).where(Location.call_id == call.call_id))
        ).all()
        by_source = {r.source: r for r in rows}
        assert sorted(by_source) == ["network_cell", "pidf_lo"]
        assert len(rows) == 2
        pidf = by_source["pidf_lo"]
        assert pidf.lat is not None
        assert pidf.radius_m is not None
        assert abs(pidf.lat + 6.28211) < 1e-9
        assert pidf.radius_m >= 35
        assert pidf.method == "gps"
        assert pidf.raw is not None
        assert pidf.raw["effective_location"] == effective
