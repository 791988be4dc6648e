"""Operators' live states as Asterisk reports them, written as `operator_state_changed` events
of the live stream (events/hub.py).

`operator_live_states` holds each operator's last state **per PBX node** (every node's queue has
every operator, and each node's AMI follower reports what its node sees) and is the
de-duplication point: a node's state is stored only when it differs from the stored one, and an
event is added only when the operator's state merged across nodes (:func:`merge_node_states`,
docs/telephony.md "Operators across nodes") changes. Writers of every node take one
transaction-level advisory lock, so two nodes' followers never interleave their reads and writes
of the same operator, repeated reports, a restart of siaga112 or a second process reading the
same Asterisk add nothing, and the merged state an event carries is the one stored. Runs off the
AMI event path, in small batches (telephony/operator_states.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.config import DEFAULT_NODE_NAME
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
# The advisory lock every writer of operator states holds for its transaction (one writer per
# node; a few changes a second at most, so one lock for all costs nothing and cannot deadlock).
WRITE_LOCK_KEY = 0x5161_6761_4F50_5354  # "QagaOPST"

NodeState = tuple[OperatorState, str | None]


def merge_node_states(states: Iterable[NodeState]) -> NodeState:
    """One operator's state across the nodes that are up, as an operator or supervisor expects
    it (docs/telephony.md, "Operators across nodes"). Each item is the operator's state and
    pause reason on one node; a node that is down is left out by the caller.

    - ``logged_out``: a member of no node's queue;
    - ``in_call`` on any node (the operator is talking, wherever), else ``ringing`` on any;
    - ``offline`` when the phone is unreachable on every node where the operator is a member;
    - ``paused`` only when paused on every node where the phone is reachable (no node can offer
      a call), with the reason of the first such node (they are set together, so they agree);
    - else ``idle``: some node can offer the operator a call.
    """
    members = [(s, r) for s, r in states if s != "logged_out"]
    if not members:
        return ("logged_out", None)
    for busy in ("in_call", "ringing"):
        if any(s == busy for s, _ in members):
            return (busy, None)
    reachable = [(s, r) for s, r in members if s != "offline"]
    if not reachable:
        return ("offline", None)
    if all(s == "paused" for s, _ in reachable):
        return ("paused", next((r for _, r in reachable if r), None))
    return ("idle", None)


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
    # What the events of its logouts say as their source: "resync" (after an AMI login), or
    # "node_lost" (the node was taken as lost: nobody is in its queue any more).
    source: str = "resync"


async def record_operator_states(
    *,
    session: AsyncSession,
    items: Sequence[OperatorStateChange | OperatorSnapshot],
    actor: str = SYSTEM_AMI,
    node: str = DEFAULT_NODE_NAME,
    nodes: Collection[str] | None = None,
) -> int:
    """Applies changes and snapshots that ``node`` reported, in order; returns how many events
    were written (one per change of an operator's merged state). ``nodes``: the nodes
    configured now, whose states are merged (rows of a node no longer configured, such as the
    single node's ``pbx`` after a move to several nodes, are left out); None: every stored
    node. Caller commits."""
    if not items:
        return 0
    await session.execute(select(func.pg_advisory_xact_lock(WRITE_LOCK_KEY)))
    counted = None if nodes is None else frozenset(nodes) | {node}
    written = 0
    for item in items:
        if isinstance(item, OperatorSnapshot):
            written += await _record_snapshot(session, item, actor, node, counted)
        elif await _record_change(session, item, actor, node, counted):
            written += 1
    return written


async def _record_snapshot(
    session: AsyncSession,
    snapshot: OperatorSnapshot,
    actor: str,
    node: str,
    counted: frozenset[str] | None,
) -> int:
    written = 0
    for change in snapshot.changes:
        written += await _record_change(session, change, actor, node, counted)
    # Operators stored as logged in on this node that its queue no longer lists (siaga112 was
    # down when they left, Asterisk restarted, or the node is lost).
    gone = await session.scalars(
        select(OperatorLiveState.extension)
        .where(
            OperatorLiveState.node == node,
            OperatorLiveState.state != "logged_out",
            OperatorLiveState.extension.not_in(snapshot.present),
        )
        .order_by(OperatorLiveState.extension)
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
        written += await _record_change(
            session, logout, actor, node, counted, source=snapshot.source
        )
    return written


async def _record_change(
    session: AsyncSession,
    change: OperatorStateChange,
    actor: str,
    node: str,
    counted: frozenset[str] | None,
    *,
    source: str | None = None,
) -> bool:
    """Stores ``node``'s new state of one operator; adds an event when the merged state
    changed. Runs under the writers' advisory lock."""
    reason = change.pause_reason if change.state == "paused" else None
    rows = (
        await session.execute(
            select(
                OperatorLiveState.node,
                OperatorLiveState.state,
                OperatorLiveState.pause_reason,
                OperatorLiveState.changed_at,
            )
            .where(OperatorLiveState.extension == change.extension)
            .order_by(OperatorLiveState.node)
        )
    ).all()
    by_node: dict[str, NodeState] = {
        r.node: (cast(OperatorState, r.state), r.pause_reason)
        for r in rows
        if counted is None or r.node in counted
    }
    own = next((r for r in rows if r.node == node), None)
    if own is None:
        await session.execute(
            pg_insert(OperatorLiveState)
            .values(
                extension=change.extension,
                node=node,
                state=change.state,
                pause_reason=reason,
                changed_at=change.at,
            )
            .on_conflict_do_nothing(index_elements=["extension", "node"])
        )
    else:
        if (own.state, own.pause_reason) == (change.state, reason):
            return False
        if not change.resync and change.at < own.changed_at:
            return False  # older than what is stored: a late report
        await session.execute(
            update(OperatorLiveState)
            .where(OperatorLiveState.extension == change.extension, OperatorLiveState.node == node)
            .values(
                state=change.state,
                pause_reason=reason,
                changed_at=max(change.at, own.changed_at),
            )
        )
    before = merge_node_states(by_node.values()) if by_node else None
    by_node[node] = (change.state, reason)
    after = merge_node_states(by_node.values())
    if after == before:
        return False  # this node's state moved, the operator's did not (another node's counts)
    state, merged_reason = after
    await session.execute(
        insert(StreamEvent).values(
            at=change.at,
            actor=actor,
            kind=EVENT_KIND,
            data={
                "extension": change.extension,
                "state": state,
                "previous": None if before is None else before[0],
                "pause_reason": merged_reason,
                "queue": change.queue,
                "source": source or ("resync" if change.resync else "event"),
                # The node whose report moved the state, and what each node counted says.
                "node": node,
                "nodes": {n: s for n, (s, _) in sorted(by_node.items())},
            },
        )
    )
    return True
