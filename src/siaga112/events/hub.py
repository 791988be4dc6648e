"""One listener per process fans new timeline events out to every connected stream.

The incident timeline (`incident_events`) is the event log: calls answered, ended, abandoned,
incidents created and changed, notes, locations, dispatches. PostgreSQL NOTIFY (a statement
trigger) wakes the hub; it then reads the rows after the last id it delivered. Identity values
are handed out before commit, so a row with a lower id can become visible after a higher one:
the hub waits a short while at such a gap before it moves past it (a rolled-back insert leaves a
gap that never fills).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.incidents.models import IncidentEvent
from siaga112.telephony.metrics import Metrics

log = logging.getLogger(__name__)

CHANNEL = "siaga112_events"


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: int
    incident_id: int
    at: datetime
    actor: str
    kind: str
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "kind": self.kind,
            "data": self.data,
        }


def _event(row: IncidentEvent) -> LiveEvent:
    return LiveEvent(row.id, row.incident_id, row.at, row.actor, row.kind, row.data)


class Subscription:
    def __init__(self, hub: EventHub, size: int) -> None:
        self.queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(size)
        self._hub = hub
        self.overflowed = False

    def close(self) -> None:
        self._hub._subscribers.discard(self)


class EventHub:
    def __init__(
        self,
        *,
        dsn: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        poll_s: float = 1.0,
        gap_wait_s: float = 2.0,
        queue_size: int = 1000,
    ) -> None:
        self.dsn = dsn
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.poll_s = poll_s
        self.gap_wait_s = gap_wait_s
        self.queue_size = queue_size
        self.last_id = 0
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._gap_since: float | None = None

    async def start(self) -> None:
        async with self.sessionmaker() as session:
            self.last_id = (await session.scalar(select(func.max(IncidentEvent.id)))) or 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_listener()
        for sub in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    async def subscribe(self) -> Subscription:
        if not self._subscribers:
            # Nobody listened, so nothing was read: start from what is there now.
            async with self.sessionmaker() as session:
                newest = await session.scalar(select(func.max(IncidentEvent.id)))
            self.last_id = max(self.last_id, newest or 0)
            self._gap_since = None
        sub = Subscription(self, self.queue_size)
        self._subscribers.add(sub)
        return sub

    async def replay(self, *, after_id: int, limit: int = 1000) -> list[LiveEvent]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(
                select(IncidentEvent)
                .where(IncidentEvent.id > after_id)
                .order_by(IncidentEvent.id)
                .limit(limit)
            )
            return [_event(r) for r in rows]

    async def _listen(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(CHANNEL, self._notified)

    async def _close_listener(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except Exception as exc:
                # Without NOTIFY the hub still polls; try to listen again next round.
                self.metrics.inc("event_listener_failures")
                log.warning("event listener unavailable (%s); polling", type(exc).__name__)
                await self._close_listener()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()
            try:
                await self._deliver_new()
            except Exception:
                self.metrics.inc("event_delivery_failures")
                log.exception("reading new events failed")
                await asyncio.sleep(self.poll_s)

    async def _deliver_new(self) -> None:
        if not self._subscribers:
            return  # reading events nobody receives costs the AGI path CPU (bench/surge)
        while True:
            events = await self.replay(after_id=self.last_id, limit=500)
            if not events:
                return
            for event in events:
                if event.id != self.last_id + 1 and not self._gap_expired():
                    # An earlier id may still commit: look again shortly.
                    self._wake.set()
                    await asyncio.sleep(0.02)
                    return
                self._gap_since = None
                self.last_id = event.id
                self._publish(event)
            if len(events) < 500:
                return

    def _gap_expired(self) -> bool:
        now = time.monotonic()
        if self._gap_since is None:
            self._gap_since = now
        return now - self._gap_since >= self.gap_wait_s

    def _publish(self, event: LiveEvent) -> None:
        self.metrics.inc("live_events")
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client that cannot keep up is cut off; it resumes with Last-Event-ID.
                sub.overflowed = True
                self.metrics.inc("live_stream_overflows")
                self._subscribers.discard(sub)
