"""Operators' live states as Asterisk reports them, written as `operator_state_changed` events
of the live stream (events/hub.py).

`operator_live_states` holds each operator's last state and is the de-duplication point: a state
is written (and an event added) only when it differs from the stored one, under the row's lock,
so repeated reports, a restart of siaga112 or a second process reading the same Asterisk add
nothing. Runs off the AMI event path, in small batches (telephony/operator_states.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.events.models import StreamEvent
from siaga112.operators.models import OperatorLiveState

OperatorState = Literal["idle", "ringing", "in_call", "paused", "offline", "logged_out"]
OPERATOR_STATES: tuple[OperatorState, ...] = (
    "idle",
    "ringing",
    "in_call",
    "paused",
    "offline",
    "logged_out",
)
EVENT_KIND = "operator_state_changed"
SYSTEM_AMI = "system:ami"


@dataclass(frozen=True, slots=True)
class OperatorStateChange:
    """One operator's new state; ``pause_reason`` only with ``paused``."""

    extension: str
    state: OperatorState
    pause_reason: str | None
    at: datetime
    queue: str
    # From a full queue status after an AMI (re)login rather than from an event: fresher than
    # anything stored, whatever the clocks say.
    resync: bool = False


@dataclass(frozen=True, slots=True)
class OperatorSnapshot:
    """Every member of the queue as Asterisk listed it: the members' states, and every other
    operator logged out."""

    queue: str
    at: datetime
    changes: tuple[OperatorStateChange, ...]
    present: frozenset[str]


async def record_operator_states(
    *,
    session: AsyncSession,
    items: Sequence[OperatorStateChange | OperatorSnapshot],
    actor: str = SYSTEM_AMI,
) -> int:
    """Applies changes and snapshots in order; returns how many events were written. Caller
    commits."""
    written = 0
    for item in items:
        if isinstance(item, OperatorSnapshot):
            written += await _record_snapshot(session, item, actor)
        elif await _record_change(session, item, actor):
            written += 1
    return written


async def _record_snapshot(session: AsyncSession, snapshot: OperatorSnapshot, actor: str) -> int:
    written = 0
    for change in snapshot.changes:
        written += await _record_change(session, change, actor)
    # Operators stored as logged in that the queue no longer lists (siaga112 was down when
    # they left, or Asterisk restarted).
    gone = await session.scalars(
        select(OperatorLiveState.extension).where(
            OperatorLiveState.state != "logged_out",
            OperatorLiveState.extension.not_in(snapshot.present),
        )
    )
    for extension in list(gone):
        logout = OperatorStateChange(
            extension=extension,
            state="logged_out",
            pause_reason=None,
            at=snapshot.at,
            queue=snapshot.queue,
            resync=True,
        )
        written += await _record_change(session, logout, actor)
    return written


async def _record_change(session: AsyncSession, change: OperatorStateChange, actor: str) -> bool:
    reason = change.pause_reason if change.state == "paused" else None
    row = (
        await session.execute(
            select(
                OperatorLiveState.state,
                OperatorLiveState.pause_reason,
                OperatorLiveState.changed_at,
            )
            .where(OperatorLiveState.extension == change.extension)
            .with_for_update()
        )
    ).first()
    previous: str | None = None
    if row is None:
        inserted = await session.scalar(
            pg_insert(OperatorLiveState)
            .values(
                extension=change.extension,
                state=change.state,
                pause_reason=reason,
                changed_at=change.at,
            )
            .on_conflict_do_nothing(index_elements=["extension"])
            .returning(OperatorLiveState.extension)
        )
        if inserted is None:
            # Another process stored this operator's first state meanwhile: compare with it.
            return await _record_change(session, change, actor)
    else:
        if (row.state, row.pause_reason) == (change.state, reason):
            return False
        if not change.resync and change.at < row.changed_at:
            return False  # older than what is stored: a late report
        previous = row.state
        await session.execute(
            update(OperatorLiveState)
            .where(OperatorLiveState.extension == change.extension)
            .values(
                state=change.state,
                pause_reason=reason,
                changed_at=max(change.at, row.changed_at),
            )
        )
    await session.execute(
        insert(StreamEvent).values(
            at=change.at,
            actor=actor,
            kind=EVENT_KIND,
            data={
                "extension": change.extension,
                "state": change.state,
                "previous": previous,
                "pause_reason": reason,
                "queue": change.queue,
                "source": "resync" if change.resync else "event",
            },
        )
    )
    return True
