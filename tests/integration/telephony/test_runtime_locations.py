"""The telephony runtime derives a call's location after the AGI write has committed, in a
tracked background task; failures are logged and counted, never felt by the call."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from siaga112.calls.models import Call
from siaga112.config import AmiSettings, Settings
from siaga112.locations.cells import import_cells
from siaga112.locations.models import Location
from siaga112.metrics import Metrics
from siaga112.runtime.telephony import Telephony
from tests.factories import call_facts
from tests.integration.locations.conftest import (
    TEST_CELL,
    TEST_PANI,
    driver,
    inline_tasks,
    write_csv,
)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def cell_table(connection: AsyncConnection, tmp_path: Path) -> None:
    await import_cells(await driver(connection), write_csv(tmp_path / "c.csv", [TEST_CELL]))


def _telephony(settings: Settings, sessionmaker: Sessions, tmp_path: Path) -> Telephony:
    conf = settings.model_copy(
        update={
            "ami": AmiSettings(secret=SecretStr("test")),
            "state_dir": tmp_path,
            "locations": settings.locations.model_copy(update={"derive_in": "inline"}),
        }
    )
    return Telephony(settings=conf, sessionmaker=sessionmaker, metrics=Metrics())


async def test_recorded_call_gets_its_cell_location_after_the_write(
    settings: Settings,
    sessionmaker: Sessions,
    connection: AsyncConnection,
    tmp_path: Path,
) -> None:
    await import_cells(await driver(connection), write_csv(tmp_path / "c.csv", [TEST_CELL]))
    tel = _telephony(settings, sessionmaker, tmp_path)
    recorded = await tel._record_call(
        call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=TEST_PANI), datetime.now(UTC)
    )
    assert len(inline_tasks(tel)) == 1, "derivation is scheduled, not awaited by the AGI write"
    await asyncio.gather(*inline_tasks(tel))
    async with sessionmaker() as session:
        loc = await session.scalar(select(Location).where(Location.call_id == recorded.call_id))
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.28211, 106.97432, 1200.0)
    assert tel.metrics.counters["location_tasks_done"] == 1


async def test_call_without_location_or_number_schedules_nothing(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    tel = _telephony(settings, sessionmaker, tmp_path)
    anonymous = replace(
        call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=None),
        caller_number="anonymous",
        caller_e164=None,
        callback_number=None,
        caller_id_available=False,
    )
    await tel._record_call(anonymous, datetime.now(UTC))
    assert not inline_tasks(tel)


async def test_call_with_a_number_looks_for_aml_that_came_first(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    tel = _telephony(settings, sessionmaker, tmp_path)
    await tel._record_call(call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=None), datetime.now(UTC))
    assert len(inline_tasks(tel)) == 1
    await asyncio.gather(*inline_tasks(tel))
    assert tel.metrics.counters["location_tasks_done"] == 1


async def test_failed_derivation_is_counted_and_the_call_unaffected(
    settings: Settings,
    sessionmaker: Sessions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(**_: object) -> list[Location]:
        raise RuntimeError("cell table unavailable")

    monkeypatch.setattr("siaga112.locations.worker.locations_for_call", broken)
    tel = _telephony(settings, sessionmaker, tmp_path)
    recorded = await tel._record_call(
        call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=TEST_PANI), datetime.now(UTC)
    )
    assert recorded.incident_id > 0
    await asyncio.gather(*inline_tasks(tel), return_exceptions=True)
    await asyncio.sleep(0)
    assert tel.metrics.counters["location_failures"] == 1
    assert not inline_tasks(tel)


EFFECTIVE = 'shape="Circle",crs="2d",pos="-6.30001 106.90002",radius="15"'


async def _sources(sessionmaker: Sessions, call_id: uuid.UUID) -> list[tuple[str, float | None]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Location).where(Location.call_id == call_id).order_by(Location.source)
        )
        return [(r.source, r.radius_m) for r in rows]


async def _done_at(sessionmaker: Sessions, call_id: uuid.UUID) -> datetime | None:
    async with sessionmaker() as session:
        return await session.scalar(select(Call.locations_done_at).where(Call.id == call_id))


@pytest.mark.usefixtures("cell_table")
async def test_call_deferred_by_the_backlog_gets_cell_and_pidf_location_from_the_sweep(
    settings: Settings,
    sessionmaker: Sessions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("siaga112.locations.worker.BACKLOG", 0)
    tel = _telephony(settings, sessionmaker, tmp_path)
    facts = replace(
        call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=TEST_PANI),
        geolocation="<cid:loc-1@carrier.invalid>",
        geoloc_effective=EFFECTIVE,
        geoloc_method="gps",
    )
    recorded = await tel._record_call(facts, datetime.now(UTC) - timedelta(minutes=2))
    assert not inline_tasks(tel)
    assert tel.metrics.counters["location_tasks_deferred"] == 1
    assert await _sources(sessionmaker, recorded.call_id) == []
    await tel._sweep_locations()
    assert await _sources(sessionmaker, recorded.call_id) == [
        ("network_cell", 1200.0),
        ("pidf_lo", 15.0),
    ]
    assert await _done_at(sessionmaker, recorded.call_id) is not None
    await tel._sweep_locations()  # done: nothing twice
    assert len(await _sources(sessionmaker, recorded.call_id)) == 2


@pytest.mark.usefixtures("cell_table")
async def test_failed_derivation_is_retried_by_the_sweep(
    settings: Settings,
    sessionmaker: Sessions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(**_: object) -> list[Location]:
        raise RuntimeError("database hiccup")

    tel = _telephony(settings, sessionmaker, tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr("siaga112.locations.worker.locations_for_call", broken)
        recorded = await tel._record_call(
            call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=TEST_PANI),
            datetime.now(UTC) - timedelta(minutes=2),
        )
        await asyncio.gather(*inline_tasks(tel), return_exceptions=True)
    assert await _done_at(sessionmaker, recorded.call_id) is None
    await tel._sweep_locations()
    assert await _sources(sessionmaker, recorded.call_id) == [("network_cell", 1200.0)]


async def test_a_live_call_is_marked_done_and_a_young_one_left_to_its_task(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tel = _telephony(settings, sessionmaker, tmp_path)
    live = await tel._record_call(
        call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=TEST_PANI),
        datetime.now(UTC) - timedelta(minutes=2),
    )
    await asyncio.gather(*inline_tasks(tel))
    assert await _done_at(sessionmaker, live.call_id) is not None
    monkeypatch.setattr("siaga112.locations.worker.BACKLOG", 0)
    young = await tel._record_call(
        call_facts(f"rt-{uuid.uuid4().hex[:8]}", pani=TEST_PANI), datetime.now(UTC)
    )
    await tel._sweep_locations()
    assert await _done_at(sessionmaker, young.call_id) is None, "within the grace period"
