"""How long live-stream events without an incident (``stream_events``: operator state changes)
are kept. They serve a console that reconnects (``Last-Event-ID``) and nothing else: the
operators' present state is in ``operator_live_state`` and every change of it is audited, so an
event older than the retention has no reader left. Incident timelines are never purged here."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.events.models import StreamEvent
from siaga112.metrics import Metrics

log = logging.getLogger(__name__)

PURGE_EVERY_S = 3600.0


async def purge_stream_events(*, session: AsyncSession, older_than: datetime) -> int:
    """Delete stream events from before ``older_than``; returns how many."""
    result = await session.execute(delete(StreamEvent).where(StreamEvent.at < older_than))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def purge_forever(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    retention_days: int,
    metrics: Metrics,
    every_s: float = PURGE_EVERY_S,
) -> None:
    """Purge at once, then every ``every_s``; a failure (database away) waits for the next."""
    while True:
        try:
            async with sessionmaker() as session:
                cutoff = datetime.now(UTC) - timedelta(days=retention_days)
                count = await purge_stream_events(session=session, older_than=cutoff)
                await session.commit()
            metrics.inc("stream_events_purged", count)
            if count:
                log.info("purged %d stream events older than %d days", count, retention_days)
        except Exception:
            metrics.inc("stream_event_purge_failures")
            log.exception("purging old stream events failed")
        await asyncio.sleep(every_s)
