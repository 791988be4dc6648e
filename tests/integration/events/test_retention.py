"""stream_events retention against the real database: events without an incident older than
the retention go, newer ones and every incident's timeline stay."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.config import Settings
from siaga112.events.models import StreamEvent
from siaga112.events.retention import purge_forever, purge_stream_events
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.metrics import Metrics

NOW = datetime.now(UTC)


async def _stream_event(session: AsyncSession, *, at: datetime, marker: str) -> None:
    await session.execute(
        insert(StreamEvent).values(
            at=at, actor="test", kind="operator_state_changed", data={"marker": marker}
        )
    )


async def _left(session: AsyncSession, marker: str) -> list[datetime]:
    rows = await session.scalars(
        select(StreamEvent.at).where(StreamEvent.data["marker"].astext == marker)
    )
    return sorted(rows)


async def test_purge_keeps_what_is_newer_than_the_cutoff(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    marker = uuid.uuid4().hex
    async with sessionmaker() as session:
        for days in (30, 8, 6, 0):
            await _stream_event(session, at=NOW - timedelta(days=days), marker=marker)
        incident = Incident(
            status="new", priority=3, channel="radio", summary="stays", created_by="test"
        )
        session.add(incident)
        await session.flush()
        session.add(
            IncidentEvent(
                incident_id=incident.id, at=NOW - timedelta(days=400), actor="t", kind="note",
                data={},
            )
        )  # fmt: skip
        await session.commit()
        purged = await purge_stream_events(session=session, older_than=NOW - timedelta(days=7))
        await session.commit()
        assert purged >= 2
        assert await _left(session, marker) == [NOW - timedelta(days=6), NOW]
        timeline = await session.scalar(
            select(func.count()).where(IncidentEvent.incident_id == incident.id)
        )
        assert timeline == 1


async def test_the_purge_loop_purges_at_once_with_the_configured_retention(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    marker = uuid.uuid4().hex
    retention = Settings().events.retention_days
    assert retention == 7
    async with sessionmaker() as session:
        await _stream_event(session, at=NOW - timedelta(days=retention, hours=1), marker=marker)
        await _stream_event(session, at=NOW - timedelta(days=retention - 1), marker=marker)
        await session.commit()
    metrics = Metrics()
    task = asyncio.create_task(
        purge_forever(
            sessionmaker=sessionmaker, retention_days=retention, metrics=metrics, every_s=3600
        )
    )
    try:
        for _ in range(100):
            if (
                metrics.counters["stream_events_purged"]
                or metrics.counters["stream_event_purge_failures"]
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert metrics.counters["stream_event_purge_failures"] == 0
    assert metrics.counters["stream_events_purged"] >= 1
    async with sessionmaker() as session:
        assert await _left(session, marker) == [NOW - timedelta(days=retention - 1)]
