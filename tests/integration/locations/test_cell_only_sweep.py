"""The sweep derives its cell-only calls together (set-based) and every other call one by one:
the set-based path writes exactly the rows the per-call path writes (location, timeline line,
audit row, done-mark), never takes a call that had more to derive (PIDF-LO, AML waiting), and
waits for a derivation of the same call running elsewhere instead of adding its cell twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

import siaga112.locations.worker as worker_module
from siaga112.audit.models import AuditEvent
from siaga112.calls.models import Call
from siaga112.config import AmiSettings, Settings
from siaga112.incidents.models import IncidentEvent
from siaga112.locations.cells import import_cells
from siaga112.locations.models import Location
from siaga112.locations.service import (
    CallLocationJob,
    derive_cell_only_calls,
    locations_for_call,
    mark_locations_done,
    pending_location_jobs,
)
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics
from tests.conftest import fresh_database
from tests.integration.locations.conftest import (
    TEST_CELL,
    TEST_PANI,
    driver,
    record_call,
    write_csv,
)

Sessions = async_sessionmaker[AsyncSession]
UNKNOWN_PANI = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5108900FF1234567"
EFFECTIVE = 'shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"'
# Known cell, unknown cell, a header that does not parse, a blank one.
PANIS = (TEST_PANI, UNKNOWN_PANI, "junk;;=", "  ")


@pytest.fixture
async def cell_table(connection: AsyncConnection, tmp_path: Path) -> None:
    await import_cells(await driver(connection), write_csv(tmp_path / "c.csv", [TEST_CELL]))


def _worker(settings: Settings, sessionmaker: Sessions, tmp_path: Path) -> LocationWorker:
    settings = settings.model_copy(
        update={"ami": AmiSettings(secret=SecretStr("test")), "state_dir": tmp_path}
    )
    return LocationWorker(settings=settings, sessionmaker=sessionmaker, metrics=Metrics())


async def _written(session: AsyncSession, call_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """Everything a derivation wrote for a call, without what differs between two calls
    (ids, the call's own incident, times of writing)."""
    out: list[tuple[Any, ...]] = []
    for loc in (await session.scalars(select(Location).where(Location.call_id == call_id))).all():
        out.append(
            (
                "location",
                loc.source,
                loc.method,
                loc.lat,
                loc.lon,
                loc.radius_m,
                loc.confidence,
                loc.address,
                loc.raw,
                loc.confirmed,
                loc.confirmed_by,
                loc.confirmed_at,
                loc.incident_id is not None,
            )
        )
        skip = {"location_id", "call_id", "observed_at", "incident_id"}
        for ev in (
            await session.scalars(
                select(IncidentEvent).where(IncidentEvent.data["location_id"].astext == str(loc.id))
            )
        ).all():
            data = {k: v for k, v in ev.data.items() if k not in skip}
            out.append(("timeline", ev.incident_id == loc.incident_id, ev.actor, ev.kind, data))
        for row in (
            await session.execute(
                select(
                    AuditEvent,
                    AuditEvent.before.is_(None).label("before_is_sql_null"),
                ).where(AuditEvent.entity_id == str(loc.id))
            )
        ).all():
            audit = row.AuditEvent
            after = {k: v for k, v in (audit.after or {}).items() if k not in skip}
            out.append(
                (
                    "audit",
                    audit.actor,
                    audit.actor_key_id,
                    audit.action,
                    audit.entity_type,
                    audit.before,
                    row.before_is_sql_null,
                    after,
                    (audit.after or {}).get("incident_id") == loc.incident_id,
                    audit.request_id,
                )
            )
    done = await session.scalar(select(Call.locations_done_at).where(Call.id == call_id))
    out.append(("done", done is not None))
    return out


@pytest.mark.usefixtures("cell_table")
async def test_set_based_writes_what_the_per_call_path_writes(sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        pairs = []
        for pani in PANIS:
            one = await record_call(session, f"one-{uuid.uuid4().hex[:8]}", pani=pani)
            other = await record_call(session, f"set-{uuid.uuid4().hex[:8]}", pani=pani)
            pairs.append((pani, one, other))
        await session.commit()
        for pani, one, _ in pairs:
            await locations_for_call(
                session=session,
                call_id=one.call_id,
                incident_id=one.incident_id,
                pani=pani,
                geoloc_effective=None,
                geoloc_method=None,
                observed_at=datetime.now(UTC),
            )
            await mark_locations_done(session=session, call_id=one.call_id)
        jobs = await pending_location_jobs(
            session=session,
            since=datetime.now(UTC) - timedelta(hours=1),
            before=datetime.now(UTC) + timedelta(minutes=1),
        )
        wanted = {other.call_id for _, _, other in pairs}
        left = await derive_cell_only_calls(
            session=session, jobs=[j for j in jobs if j.call_id in wanted]
        )
        assert left == []
        await session.commit()
        for pani, one, other in pairs:
            per_call = await _written(session, one.call_id)
            set_based = await _written(session, other.call_id)
            assert set_based == per_call, pani
            assert per_call[-1] == ("done", True)
        # The known cell's location has its coordinates, the others none.
        [known] = (
            await session.scalars(select(Location).where(Location.call_id == pairs[0][2].call_id))
        ).all()
        assert (known.lat, known.lon, known.radius_m) == (-6.28211, 106.97432, 1200.0)
        # Done: a second pass over the same calls adds nothing.
        await derive_cell_only_calls(session=session, jobs=[j for j in jobs if j.call_id in wanted])
        assert await _written(session, pairs[0][2].call_id) == await _written(
            session, pairs[0][1].call_id
        )


@pytest.mark.usefixtures("cell_table")
async def test_a_sweep_takes_a_call_with_a_pidf_lo_one_by_one(
    settings: Settings, sessionmaker: Sessions, tmp_path: Path
) -> None:
    async with sessionmaker() as session:
        with_pidf = await record_call(
            session, f"p-{uuid.uuid4().hex[:8]}", geoloc_effective=EFFECTIVE
        )
        cell_only = [await record_call(session, f"c-{uuid.uuid4().hex[:8]}", pani=p) for p in PANIS]
        await session.commit()
    worker = _worker(settings, sessionmaker, tmp_path)
    assert await worker.sweep(grace=timedelta(0)) >= 1 + len(PANIS)
    async with sessionmaker() as session:
        sources = sorted(
            (
                await session.scalars(
                    select(Location.source).where(Location.call_id == with_pidf.call_id)
                )
            ).all()
        )
        assert sources == ["network_cell", "pidf_lo"], "the PIDF-LO is not lost to the fast path"
        for recorded in (with_pidf, *cell_only):
            done = await session.scalar(
                select(Call.locations_done_at).where(Call.id == recorded.call_id)
            )
            assert done is not None
        counts = [
            len(
                (
                    await session.scalars(select(Location.id).where(Location.call_id == r.call_id))
                ).all()
            )
            for r in cell_only
        ]
        assert counts == [1, 1, 1, 0]  # the blank header gives nothing, and is done
    assert worker.metrics.counters.get("location_batch_failures", 0) == 0


async def _pending(sessionmaker: Sessions) -> list[CallLocationJob]:
    async with sessionmaker() as session:
        return await pending_location_jobs(
            session=session,
            since=datetime.now(UTC) - timedelta(hours=1),
            before=datetime.now(UTC) + timedelta(minutes=1),
        )


async def test_a_failed_batch_leaves_its_calls_to_the_per_call_path(
    settings: Settings,
    sessionmaker: Sessions,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with sessionmaker() as session:
        recorded = await record_call(session, f"f-{uuid.uuid4().hex[:8]}", pani=UNKNOWN_PANI)
        await session.commit()

    async def broken(**kwargs: object) -> None:
        raise RuntimeError("statement refused")

    monkeypatch.setattr(worker_module, "derive_cell_only_calls", broken)
    worker = _worker(settings, sessionmaker, tmp_path)
    assert await worker.sweep(grace=timedelta(0)) >= 1
    assert worker.metrics.counters["location_batch_failures"] == 1
    async with sessionmaker() as session:
        [loc] = (
            await session.scalars(select(Location).where(Location.call_id == recorded.call_id))
        ).all()
        assert loc.method == "cell-lte"
        call = await session.get(Call, recorded.call_id)
        assert call is not None
        assert call.locations_done_at is not None


@pytest.fixture
def scratch_url() -> Iterator[str]:
    # Two transactions that really run at once: a database of its own, not the tests' one.
    yield from fresh_database("cellonly")


async def test_set_based_waits_for_a_derivation_of_the_same_call_and_adds_nothing_twice(
    scratch_url: str,
) -> None:
    engine = create_async_engine(scratch_url, pool_size=4)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as session:
            recorded = await record_call(session, f"r-{uuid.uuid4().hex[:8]}", pani=UNKNOWN_PANI)
            await session.commit()
        [job] = [j for j in await _pending(sessions) if j.call_id == recorded.call_id]
        async with sessions() as inline:
            # A derivation of the call (an inline task, another process's sweep) holds its
            # lock and has stored the cell, not yet committed.
            await locations_for_call(
                session=inline,
                call_id=job.call_id,
                incident_id=job.incident_id,
                pani=job.pani,
                geoloc_effective=None,
                geoloc_method=None,
                observed_at=job.at,
            )

            async def batch() -> list[CallLocationJob]:
                async with sessions() as session:
                    left = await derive_cell_only_calls(session=session, jobs=[job])
                    await session.commit()
                    return left

            task = asyncio.create_task(batch())
            async with sessions() as probe:
                for _ in range(500):
                    waiting = await probe.scalar(
                        text(
                            "SELECT count(*) FROM pg_locks"
                            " WHERE locktype = 'advisory' AND NOT granted"
                        )
                    )
                    if waiting:
                        break
                    await asyncio.sleep(0.01)
            assert waiting == 1, "the set-based path waits for the call's lock"
            assert not task.done()
            await mark_locations_done(session=inline, call_id=job.call_id)
            await inline.commit()
        assert await asyncio.wait_for(task, 10) == []
        async with sessions() as session:
            rows = (
                await session.scalars(select(Location).where(Location.call_id == job.call_id))
            ).all()
            assert len(rows) == 1
            audits = (
                await session.scalars(
                    select(AuditEvent.id).where(AuditEvent.action == "location.add")
                )
            ).all()
            assert len(audits) == 1
    finally:
        await engine.dispose()
