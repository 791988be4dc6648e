"""The live queue: who waits (Asterisk's QueueStatus, enriched with the call, incident, latest
location, and the caller's active flag and history in counts from the database), the longest
wait, and operators grouped by state. The enrichment is a fixed number of statements however
many callers wait: no query per caller."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.callcontrol.protocol import CallControl, CallControlError, QueueEntryState
from siaga112.callers.numbers import subscriber_number
from siaga112.callers.service import caller_briefs, number_of_call
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident
from siaga112.locations.models import Location
from siaga112.operators.models import Operator
from siaga112.operators.service import QueueTarget, live_states
from siaga112.queue.schemas import (
    FlagSummary,
    HistorySummary,
    LiveQueue,
    LocationSummary,
    WaitingCall,
)


async def _entries_from_asterisk(control: CallControl | None) -> list[QueueEntryState] | None:
    if control is None:
        return None
    try:
        return await control.queue_entries()
    except (CallControlError, TimeoutError):
        return None


async def _entries_from_db(session: AsyncSession, now: datetime) -> list[QueueEntryState]:
    rows = (
        await session.scalars(
            select(Call)
            .where(Call.state.in_(("queued", "ringing")), Call.ended_at.is_(None))
            .order_by(Call.enqueued_at.nulls_last(), Call.offered_at)
            .limit(500)
        )
    ).all()
    return [
        QueueEntryState(
            queue=c.queue or "",
            position=i,
            channel=c.channel or "",
            uniqueid=c.uniqueid,
            caller_number=c.caller_number or "",
            wait_s=max(0, int((now - (c.enqueued_at or c.offered_at)).total_seconds())),
        )
        for i, c in enumerate(rows, start=1)
    ]


async def live_queue(
    *, session: AsyncSession, control: CallControl | None, target: QueueTarget
) -> LiveQueue:
    now = datetime.now(UTC)
    entries = await _entries_from_asterisk(control)
    source = "asterisk"
    if entries is None:
        source = "database"
        entries = await _entries_from_db(session, now)
    uniqueids = [e.uniqueid for e in entries]
    calls: dict[str, tuple[Call, Incident | None]] = {}
    if uniqueids:
        rows = await session.execute(
            select(Call, Incident)
            .outerjoin(Incident, Incident.id == Call.incident_id)
            .where(Call.uniqueid.in_(uniqueids))
        )
        calls = {c.uniqueid: (c, i) for c, i in rows}
    locations: dict[object, Location] = {}
    call_ids = [c.id for c, _ in calls.values()]
    if call_ids:
        # Latest location per call; an operator-confirmed one wins.
        loc_rows = await session.scalars(
            select(Location)
            .where(Location.call_id.in_(call_ids))
            .order_by(Location.call_id, Location.confirmed.desc(), Location.observed_at.desc())
            .ext(distinct_on(Location.call_id))
        )
        locations = {loc.call_id: loc for loc in loc_rows}
    numbers: dict[str, str | None] = {}
    for e in entries:
        call, _ = calls.get(e.uniqueid, (None, None))
        # Without a row yet (siaga112 missed the AGI step), Asterisk's caller ID is all there is.
        numbers[e.uniqueid] = (
            number_of_call(call) if call is not None else subscriber_number(e.caller_number)
        )
    briefs = await caller_briefs(
        session=session, numbers=[n for n in numbers.values() if n is not None]
    )
    waiting: list[WaitingCall] = []
    for e in sorted(entries, key=lambda e: (e.queue, e.position)):
        call, incident = calls.get(e.uniqueid, (None, None))
        loc = locations.get(call.id) if call is not None else None
        number = numbers[e.uniqueid]
        brief = briefs.get(number) if number is not None else None
        waiting.append(
            WaitingCall(
                queue=e.queue,
                position=e.position,
                caller=e.caller_number or (call.caller_number if call else None) or None,
                wait_s=e.wait_s,
                call_id=call.id if call else None,
                incident_id=call.incident_id if call else None,
                priority=incident.priority if incident else None,
                location=LocationSummary(
                    source=loc.source,
                    lat=loc.lat,
                    lon=loc.lon,
                    radius_m=loc.radius_m,
                    confirmed=loc.confirmed,
                )
                if loc is not None
                else None,
                number=number,
                flag=FlagSummary(
                    id=brief.flag.id,
                    kind=brief.flag.kind,
                    reason=brief.flag.reason,
                    expires_at=brief.flag.expires_at,
                )
                if brief is not None and brief.flag is not None
                else None,
                history=HistorySummary(
                    calls_total=brief.calls_total,
                    incidents_total=brief.incidents_total,
                    false_calls=brief.false_calls,
                )
                if brief is not None
                else None,
            )
        )
    by_state: dict[str, list[str]] = defaultdict(list)
    states = await live_states(control=control, target=target)
    if states is not None:
        known = set(
            (await session.scalars(select(Operator.extension).where(Operator.enabled))).all()
        )
        for ext in sorted(known | set(states)):
            member = states.get(ext)
            by_state[member.state if member is not None else "logged_out"].append(ext)
    return LiveQueue(
        source=source,
        at=now,
        waiting=waiting,
        longest_wait_s=max((w.wait_s for w in waiting), default=0),
        operators_by_state=dict(by_state),
    )


class QueueSnapshot:
    """One live queue shared by every reader of this process for `max_age_s`: each console and
    wallboard polls it, and the answer does not depend on who asks (any reader sees every
    waiting caller; the target and call control are the instance's), so one computation serves
    them all. Concurrent readers of a stale snapshot wait for the one computation under way.
    Auditing stays with each request (the router)."""

    def __init__(self, *, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age_s = max_age_s
        self._clock = clock
        self._taken = 0.0
        self._queue: LiveQueue | None = None
        self._lock = asyncio.Lock()

    async def get(self, compute: Callable[[], Awaitable[LiveQueue]]) -> LiveQueue:
        if self._max_age_s <= 0:
            return await compute()
        if (queue := self._fresh()) is not None:
            return queue
        async with self._lock:
            if (queue := self._fresh()) is not None:
                return queue
            queue = await compute()
            self._queue, self._taken = queue, self._clock()
            return queue

    def _fresh(self) -> LiveQueue | None:
        if self._queue is not None and self._clock() - self._taken < self._max_age_s:
            return self._queue
        return None
