"""Operator states stored as `operator_state_changed` events against the real database: one
event per real change, however often (or by however many processes) a state is reported; late
reports never move a state back; a resynchronisation logs out who left the queue meanwhile."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from siaga112.events.models import StreamEvent
from siaga112.operators.live import (
    OperatorSnapshot,
    OperatorState,
    OperatorStateChange,
    record_operator_states,
)
from siaga112.operators.models import OperatorLiveState

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def ext() -> str:
    return f"8{uuid.uuid4().int % 10**6:06d}"


def change(
    extension: str,
    state: OperatorState,
    seconds: float = 0,
    *,
    reason: str | None = None,
    resync: bool = False,
) -> OperatorStateChange:
    return OperatorStateChange(
        extension=extension,
        state=state,
        pause_reason=reason,
        at=T0 + timedelta(seconds=seconds),
        queue="emergency",
        resync=resync,
    )


async def events_of(session: Any, extension: str) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(StreamEvent)
        .where(StreamEvent.data["extension"].astext == extension)
        .order_by(StreamEvent.id)
    )
    return [{"at": r.at, "actor": r.actor, "kind": r.kind, **r.data} for r in rows]


async def test_repeated_reports_store_one_event_per_change_with_the_previous_state(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    e = ext()
    async with sessionmaker() as session:
        items = [
            change(e, "idle", 0),
            change(e, "idle", 1),
            change(e, "ringing", 2),
            change(e, "ringing", 2.5),
            change(e, "paused", 3, reason="istirahat"),
            change(e, "paused", 4, reason="istirahat"),
        ]
        assert await record_operator_states(session=session, items=items) == 3
        # A second process reporting the same (or a restart replaying it) adds nothing.
        assert await record_operator_states(session=session, items=items[-2:]) == 0
        await session.commit()
        got = await events_of(session, e)
        stored = await session.get(OperatorLiveState, e)
    assert [(g["state"], g["previous"], g["pause_reason"]) for g in got] == [
        ("idle", None, None),
        ("ringing", "idle", None),
        ("paused", "ringing", "istirahat"),
    ]
    assert {g["kind"] for g in got} == {"operator_state_changed"}
    assert {g["actor"] for g in got} == {"system:ami"}
    assert got[1]["at"] == T0 + timedelta(seconds=2)
    assert stored is not None
    assert (stored.state, stored.pause_reason) == ("paused", "istirahat")


async def test_a_late_report_never_moves_the_state_back_but_a_resync_does(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    e = ext()
    async with sessionmaker() as session:
        await record_operator_states(session=session, items=[change(e, "in_call", 10)])
        late = await record_operator_states(session=session, items=[change(e, "ringing", 9)])
        fresh = await record_operator_states(
            session=session, items=[change(e, "idle", 5, resync=True)]
        )
        await session.commit()
        got = await events_of(session, e)
    assert (late, fresh) == (0, 1)
    assert [(g["state"], g["source"]) for g in got] == [("in_call", "event"), ("idle", "resync")]


async def test_snapshot_logs_out_stored_operators_the_queue_no_longer_lists(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    stays, left, gone_before = ext(), ext(), ext()
    async with sessionmaker() as session:
        await record_operator_states(
            session=session,
            items=[change(stays, "idle"), change(left, "paused", reason="rapat")],
        )
        await record_operator_states(session=session, items=[change(gone_before, "logged_out")])
        # As after a restart of siaga112: this process knows nobody, Asterisk lists one member.
        snapshot = OperatorSnapshot(
            queue="emergency",
            at=T0 + timedelta(minutes=5),
            changes=(change(stays, "idle", 300, resync=True),),
            present=frozenset({stays}),
        )
        written = await record_operator_states(session=session, items=[snapshot])
        await session.commit()
        left_events = await events_of(session, left)
        stays_events = await events_of(session, stays)
        gone_events = await events_of(session, gone_before)
    assert [(g["state"], g["previous"], g["source"]) for g in left_events] == [
        ("paused", None, "event"),
        ("logged_out", "paused", "resync"),
    ]
    assert len(stays_events) == 1, "unchanged: nothing new"
    assert len(gone_events) == 1, "already logged out: nothing new"
    # Every other operator stored by earlier tests is logged out too: at least ours.
    assert written >= 1


async def test_two_processes_reporting_the_same_change_at_once_store_it_once(
    engine: AsyncEngine,
) -> None:
    e = ext()
    committed = async_sessionmaker(engine, expire_on_commit=False)

    async def process() -> int:
        async with committed() as session:
            n = await record_operator_states(
                session=session, items=[change(e, "idle", 0), change(e, "ringing", 1)]
            )
            await session.commit()
            return n

    counts = await asyncio.gather(*(process() for _ in range(4)))
    async with committed() as session:
        got = await events_of(session, e)
    assert sum(counts) == 2
    assert [g["state"] for g in got] == ["idle", "ringing"]
