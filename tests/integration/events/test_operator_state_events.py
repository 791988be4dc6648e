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
        stored = await session.get(OperatorLiveState, (e, "pbx"))
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


async def _rows(session: Any, extension: str) -> dict[str, tuple[str, str | None]]:
    rows = await session.scalars(
        select(OperatorLiveState).where(OperatorLiveState.extension == extension)
    )
    return {r.node: (r.state, r.pause_reason) for r in rows}


async def test_two_nodes_keep_their_own_state_and_events_carry_the_merged_one(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    """Every node's queue has every operator: each node's follower stores what its node sees,
    neither overwrites the other, and the live stream says what the operator is across nodes
    (in a call on any node; paused only when paused on every node up; a lost node's view left
    out)."""
    e = ext()
    nodes = ["nodea", "nodeb"]

    async def report(node: str, *items: OperatorStateChange | OperatorSnapshot) -> int:
        return await record_operator_states(
            session=session, items=list(items), node=node, nodes=nodes
        )

    async with sessionmaker() as session:
        # A row of the single node from before `pbx.nodes` (migration 0008's `pbx`): stale,
        # not one of the nodes now, never counted.
        await record_operator_states(session=session, items=[change(e, "in_call", -60)])
        assert await report("nodea", change(e, "idle", 0)) == 1
        assert await report("nodeb", change(e, "idle", 0.5)) == 0, "idle on both: still idle"
        assert await report("nodea", change(e, "in_call", 1)) == 1
        assert await report("nodeb", change(e, "paused", 2, reason="istirahat")) == 0
        assert await report("nodea", change(e, "idle", 3)) == 1, "free on a, paused on b: idle"
        assert await report("nodea", change(e, "paused", 4, reason="istirahat")) == 1
        # Node b's late report (older than its stored state) changes nothing.
        assert await report("nodeb", change(e, "idle", 1.5)) == 0
        assert await _rows(session, e) == {
            "pbx": ("in_call", None),
            "nodea": ("paused", "istirahat"),
            "nodeb": ("paused", "istirahat"),
        }
        assert await report("nodeb", change(e, "idle", 5)) == 1
        # Node b lost (its follower's rule, runtime/telephony.py): nobody in its queue any more;
        # the operator is what node a says.
        lost = OperatorSnapshot(
            queue="emergency",
            at=T0 + timedelta(seconds=6),
            changes=(),
            present=frozenset(),
            source="node_lost",
        )
        assert await report("nodeb", lost) == 1
        assert await report("nodea", change(e, "logged_out", 7)) == 1
        await session.commit()
        got = await events_of(session, e)
        rows = await _rows(session, e)
    merged = [(g["state"], g["previous"], g["pause_reason"], g["node"]) for g in got[1:]]
    assert merged == [
        ("idle", None, None, "nodea"),
        ("in_call", "idle", None, "nodea"),
        ("idle", "in_call", None, "nodea"),
        ("paused", "idle", "istirahat", "nodea"),
        ("idle", "paused", None, "nodeb"),
        ("paused", "idle", "istirahat", "nodeb"),
        ("logged_out", "paused", None, "nodea"),
    ]
    assert got[-2]["source"] == "node_lost"
    assert got[-2]["nodes"] == {"nodea": "paused", "nodeb": "logged_out"}
    assert rows == {
        "pbx": ("in_call", None),
        "nodea": ("logged_out", None),
        "nodeb": ("logged_out", None),
    }


async def test_two_nodes_writing_at_once_store_each_view_and_one_merged_event(
    engine: AsyncEngine,
) -> None:
    """Two nodes' followers report the same operator at the same moment, over and over (their
    own transactions, committed): both rows are stored and the merged state moves once."""
    e = ext()
    committed = async_sessionmaker(engine, expire_on_commit=False)

    async def follower(node: str, seconds: float) -> int:
        n = 0
        for _ in range(3):
            async with committed() as session:
                n += await record_operator_states(
                    session=session,
                    items=[change(e, "idle", seconds), change(e, "in_call", seconds + 1)],
                    node=node,
                    nodes=["nodea", "nodeb"],
                )
                await session.commit()
        return n

    counts = await asyncio.gather(follower("nodea", 0), follower("nodeb", 0.5))
    async with committed() as session:
        got = await events_of(session, e)
        rows = await _rows(session, e)
    assert rows == {"nodea": ("in_call", None), "nodeb": ("in_call", None)}
    assert [g["state"] for g in got] == ["idle", "in_call"]
    assert sum(counts) == 2
