"""One reader per process fans new live events out to every connected stream.

Two tables make the stream: `incident_events` (the incident timeline: calls offered, answered,
ended, abandoned, incidents created and changed, notes, locations, dispatches) and
`stream_events` (events without an incident: operator state changes). Both take their ids from
one sequence (migration 0015), so one id orders both and one Last-Event-ID resumes both.
PostgreSQL NOTIFY (a statement trigger on each table) wakes the hub; it then reads the rows
after the last id it delivered.

Exactness. An id is handed out when a row is inserted, not when it commits: id 11 can be
visible while id 10 is still to commit, or never will (a rollback leaves a hole). The hub
delivers in id order and never moves past an id that can still appear, so a client that has
id N has every event below N, whichever process served it:

- a row whose id follows the last one delivered goes out at once;
- at a hole, the hub notes the highest id it has read (h) and, after that read, the
  transactions that hold a write lock on either table (pg_locks). A transaction that took an id
  below h took it before h was taken, and so before that moment; it has held the table's lock
  since before it took the id (the lock is taken when the statement is planned) and keeps it
  until it ends. Once none of the noted transactions is running, every id up to h is final:
  committed and visible, or never. The hub reads again and delivers up to h, skipping holes.

Only writers of these two tables are waited for, never other work on the database. The usual
hole (a later id committed first) closes with the NOTIFY of the earlier one's commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.metrics import Metrics

log = logging.getLogger(__name__)

CHANNEL = "siaga112_events"
BATCH = 500
REPLAY_LIMIT = 1000
MAX_ID = 2**63 - 1
# How often the hub looks again while it waits for the writers behind a hole.
HOLE_RECHECK_S = 0.003
IDLE_RECHECK_S = 0.05

# Both sources in id order; stream events have no incident. Each side is limited on its own
# primary key first, so that a long range (a backlog, a replay) never reads more than it returns.
_EVENTS = """
(SELECT id, incident_id, at, actor, kind, data FROM incident_events
 WHERE id > {a} AND id <= {b} ORDER BY id LIMIT {n})
UNION ALL
(SELECT id, NULL::bigint, at, actor, kind, data FROM stream_events
 WHERE id > {a} AND id <= {b} ORDER BY id LIMIT {n})
ORDER BY id
LIMIT {n}
"""
_EVENTS_SQL = _EVENTS.format(a="$1", b="$2", n="$3")  # the hub's own asyncpg connection
_REPLAY_SQL = text(_EVENTS.format(a=":after", b=":upto", n=":limit"))  # pooled sessions
_NEWEST_SQL = """
SELECT GREATEST((SELECT max(id) FROM incident_events), (SELECT max(id) FROM stream_events))
"""
# Transactions that may be writing either table now. Readers (AccessShareLock) are left out.
_WRITERS_SQL = """
SELECT DISTINCT virtualtransaction FROM pg_locks
WHERE locktype = 'relation'
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND relation IN ('incident_events'::regclass, 'stream_events'::regclass)
  AND mode <> 'AccessShareLock'
"""
# Every transaction holds the lock on its own virtual transaction id until it ends.
_RUNNING_SQL = """
SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY($1::text[])
"""


@dataclass(frozen=True, order=True)
class LiveEvent:
    id: int
    incident_id: int | None = field(compare=False)
    at: datetime = field(compare=False)
    actor: str = field(compare=False)
    kind: str = field(compare=False)
    data: dict[str, Any] = field(compare=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "incident_id": self.incident_id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "kind": self.kind,
            "data": self.data,
        }

    @functools.cached_property
    def frame(self) -> bytes:
        """The SSE message, encoded once however many clients it goes to."""
        data = json.dumps(self.as_json(), separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.id}\nevent: {self.kind}\ndata: {data}\n\n".encode()


def _event(row: Any) -> LiveEvent:
    data = row["data"]
    if isinstance(data, str):
        data = json.loads(data)
    return LiveEvent(row["id"], row["incident_id"], row["at"], row["actor"], row["kind"], data)


@dataclass(frozen=True, slots=True)
class _Probe:
    """Every id up to ``upto`` is final once none of ``writers`` is running."""

    upto: int
    writers: tuple[str, ...]
    since: float


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
        queue_size: int = 1000,
    ) -> None:
        self.dsn = dsn
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.poll_s = poll_s
        self.queue_size = queue_size
        # Every id up to last_id is final and was published (or nobody listened). None until
        # the hub has established such a point after its start.
        self.last_id: int | None = None
        self._ready = asyncio.Event()
        self._subscribers: set[Subscription] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self._probe: _Probe | None = None
        self._settled_upto = 0
        # Read but not yet published (a hole before them), smallest id first.
        self._buffer: list[LiveEvent] = []
        self._idle_advanced_at = 0.0
        # Set once the process is stopping (end_streams): no stream is kept open any more.
        self.closing = False

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def end_streams(self) -> None:
        """Ends every open stream (the process is stopping): a stream is a response that never
        ends by itself, and the HTTP server waits for every response before it stops. Clients
        reconnect, to this process's successor, with Last-Event-ID. A stream asked for after
        this (a client reconnecting at once, on its kept-alive connection) ends at once too."""
        self.closing = True
        for sub in list(self._subscribers):
            try:
                sub.queue.put_nowait(None)
            except asyncio.QueueFull:
                sub.overflowed = True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close_conn()
        for sub in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    async def wait_ready(self, within_s: float) -> bool:
        """True once the hub knows a point up to which every id is final."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), within_s)
        return self._ready.is_set()

    def subscribe(self) -> tuple[Subscription, int]:
        """A subscription and the id it starts after: every later event is put on its queue.

        Synchronous on purpose: nothing is published between the two."""
        if self.last_id is None:
            raise RuntimeError("the event hub is not ready")
        sub = Subscription(self, self.queue_size)
        if self.closing:
            sub.queue.put_nowait(None)
            return sub, self.last_id
        self._subscribers.add(sub)
        self._wake.set()
        return sub, self.last_id

    async def replay(
        self, *, after_id: int, up_to: int, limit: int = REPLAY_LIMIT
    ) -> list[LiveEvent]:
        """Events after ``after_id`` up to ``up_to`` (a final point: ``subscribe``'s), in order."""
        async with self.sessionmaker() as session:
            rows = await session.execute(
                _REPLAY_SQL, {"after": after_id, "upto": up_to, "limit": limit}
            )
            return [_event(r._mapping) for r in rows]

    # -- the reader ------------------------------------------------------------------------
    async def _connect(self) -> asyncpg.Connection:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            await conn.add_listener(CHANNEL, self._notified)
        except Exception:
            await conn.close()
            raise
        self._conn = conn
        self._wake.set()  # what was committed while not listening
        return conn

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:
                self.metrics.inc("event_listener_failures")
                log.warning("event stream: database unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(self.poll_s)
                continue
            timeout = self.poll_s
            if self._probe is not None:
                # Waiting for writers: soon when clients wait on it, calmly when none listens.
                timeout = HOLE_RECHECK_S if self._subscribers else min(self.poll_s, IDLE_RECHECK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                if self.last_id is None or not self._subscribers:
                    await self._advance_idle(conn)
                else:
                    await self._deliver_new(conn)
            except Exception:
                self.metrics.inc("event_delivery_failures")
                log.exception("reading new events failed")
                await self._close_conn()
                await asyncio.sleep(self.poll_s)

    async def _advance_idle(self, conn: asyncpg.Connection) -> None:
        """Without subscribers nothing is read (it would cost the AGI path CPU, bench/surge);
        the final point moves on about once per ``poll_s``, so that a first subscriber starts
        from a recent point and a resuming one can be served up to it."""
        now = time.monotonic()
        if self._probe is None:
            if self.last_id is not None and now - self._idle_advanced_at < self.poll_s:
                return
            newest = await conn.fetchval(_NEWEST_SQL)
            self._probe = await self._new_probe(conn, newest or 0)
        if not await self._settled(conn, self._probe):
            return
        if self.last_id is not None and self._subscribers:
            return  # a subscriber came meanwhile: it gets these events, delivered
        self.last_id = max(self.last_id or 0, self._probe.upto)
        self._settled_upto = max(self._settled_upto, self._probe.upto)
        self._probe = None
        self._buffer.clear()  # read again, if needed, when a subscriber comes
        self._idle_advanced_at = now
        self._ready.set()

    async def _deliver_new(self, conn: asyncpg.Connection) -> None:
        """Publishes what follows ``last_id``. Rows read beyond a hole wait in ``_buffer``; while
        the hole is open only the hole itself is read again, never the rows behind it."""
        assert self.last_id is not None
        while True:
            hole_only = bool(self._buffer)
            upto = self._buffer[0].id - 1 if hole_only else MAX_ID
            rows = await conn.fetch(_EVENTS_SQL, self.last_id, upto, BATCH)
            for row in rows:
                heapq.heappush(self._buffer, _event(row))
            while self._buffer and (
                self._buffer[0].id == self.last_id + 1 or self._buffer[0].id <= self._settled_upto
            ):
                event = heapq.heappop(self._buffer)
                self.last_id = event.id
                self._publish(event)
            if not self._buffer:
                self._probe = None  # no hole (left): nothing to wait for
                if len(rows) < BATCH and not hole_only:
                    return
                continue  # a full batch, or the hole closed: what came after it
            # A hole before _buffer[0]: every id below the highest one read is final once the
            # tables' writers seen now have ended.
            if self._probe is None or self._probe.upto < self._buffer[0].id:
                self._probe = await self._new_probe(conn, max(e.id for e in self._buffer))
            if not await self._settled(conn, self._probe):
                return  # looked at again in HOLE_RECHECK_S, or at the next NOTIFY
            self.metrics.observe("live_event_hole_wait", time.monotonic() - self._probe.since)
            self._settled_upto = max(self._settled_upto, self._probe.upto)
            self._probe = None
            # Read everything after last_id once more, not only the first hole: whatever
            # committed before the writers ended, in any hole up to settled_upto, is visible
            # now, and what is still missing there never comes.
            self._buffer.clear()

    async def _new_probe(self, conn: asyncpg.Connection, upto: int) -> _Probe:
        writers = await conn.fetch(_WRITERS_SQL)
        return _Probe(upto, tuple(r[0] for r in writers), time.monotonic())

    async def _settled(self, conn: asyncpg.Connection, probe: _Probe) -> bool:
        if not probe.writers:
            return True
        running: int = await conn.fetchval(_RUNNING_SQL, list(probe.writers))
        return running == 0

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
