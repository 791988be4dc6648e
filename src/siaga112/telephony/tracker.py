"""Pure call-state reducer: fold AMI call events into the state of one emergency call.

No I/O and no clock: ``apply_event(state, event)`` returns the next state and whether anything
changed, so the caller decides what to persist or publish.

A call is keyed by the *caller leg's* Uniqueid (the channel the carrier delivered, the one the
AGI request came from). Queue* and Agent* events name the caller leg in ``Uniqueid`` (the member
leg is in ``DestUniqueid``), so they always route to the call. Newchannel, Newstate and Hangup
name whatever channel they are about: one of them may open a call only if it is about an
originating leg (``Uniqueid == Linkedid``, true of the carrier leg, never of an operator leg,
whose Linkedid is the caller's Uniqueid). Operator legs' own Hangups thus never end a call. Every
originating leg is tracked, including any that never reach the queue (callbacks, tests); the
service layer decides which calls it keeps.

Order and replays: AMI delivers events in order on one connection, but a resynchronisation after
a reconnect, a second node or a replayed transcript may not. The state is therefore a merge of
facts, each combined with an order-free rule (first answer = earliest AgentConnect, hang-up = the
latest Hangup, hold = the smallest reported, talk = the largest), and the status is derived from
those facts alone. For any permutation or duplication of one call's events the final state is the
same; a replayed event changes nothing.

Status, derived: abandoned > ended > answered > ringing > queued > offered.

- ``abandoned``: QueueCallerAbandon was seen, or the caller reached the queue and hung up without
  an AgentConnect (the abandon event itself may have been lost). Abandoned wins over answered on
  contradictory input: a spurious callback is cheaper than a missed one.
- ``ended``: the caller leg hung up (Hangup) after being answered, or before reaching the queue.
- Terminal statuses never return to a live one. Between the two, late facts may correct the
  outcome so that it does not depend on arrival order: a QueueCallerJoin or QueueCallerAbandon
  arriving after the Hangup turns ``ended`` into ``abandoned``, and an AgentConnect arriving after
  the Hangup turns an *inferred* abandonment (no QueueCallerAbandon seen) back into ``ended``. A
  reported QueueCallerAbandon is final.

Times: ``answered_at`` is the first answer and only ever moves earlier; ``ended_at`` is the
hang-up (or abandon) time, never earlier than ``answered_at``; ``overflowed_at`` is the earliest
event about an overflow destination (rung, answered, ...) for the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from siaga112.telephony.ami_events import (
    AgentAnswered,
    AgentEvent,
    AgentFinished,
    AgentRinging,
    AmiEvent,
    CallerAbandoned,
    CallerJoinedQueue,
    ChannelEvent,
    ChannelHungUp,
    QueueEvent,
)

__all__ = ["CallState", "CallStatus", "apply_event", "call_key"]


class CallStatus(StrEnum):
    OFFERED = "offered"
    QUEUED = "queued"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    ABANDONED = "abandoned"

    @property
    def is_terminal(self) -> bool:
        return self in (CallStatus.ENDED, CallStatus.ABANDONED)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallState:
    """What the AMI stream has told about one call, keyed by the caller leg's Uniqueid."""

    uniqueid: str
    linkedid: str
    channel: str
    state: CallStatus
    offered_at: datetime
    """Earliest time any event about the call was raised (Newchannel, when it was seen)."""
    enqueued_at: datetime | None = None
    ringing_at: datetime | None = None
    """First time an operator's phone rang for this caller."""
    answered_at: datetime | None = None
    hungup_at: datetime | None = None
    """When Asterisk reported the caller leg's Hangup."""
    abandoned_at: datetime | None = None
    """When Asterisk reported QueueCallerAbandon."""
    ended_at: datetime | None = None
    queue: str | None = None
    operator: str | None = None
    """Extension of the operator who answered (from the AgentConnect member interface)."""
    abandoned: bool = False
    hangup_cause: int | None = None
    hangup_cause_txt: str | None = None
    hold_seconds: int | None = None
    """Seconds in the queue before an answer or the abandon: the smallest Asterisk reported."""
    talk_seconds: int | None = None
    """Largest talk time an AgentComplete reported."""
    completed_at: datetime | None = None
    """When the last AgentComplete was raised (the operator leg finished)."""
    completed_by: str | None = None
    """Reason of the last AgentComplete: 'caller', 'agent' or 'transfer'."""
    overflowed_at: datetime | None = None
    """First time an overflow destination (not an operator) was rung for this caller."""


def call_key(event: AmiEvent) -> str | None:
    """The Uniqueid of the channel the event is about (the caller leg for Queue*/Agent*)."""
    if isinstance(event, ChannelEvent) and event.uniqueid:
        return event.uniqueid
    return None


def apply_event(state: CallState | None, event: AmiEvent) -> tuple[CallState | None, bool]:
    """Return ``(new_state, changed)`` after ``event``; never raises for parsed events.

    ``state`` is the current state of the call ``call_key(event)`` names, or None when there is
    none yet. Events about another call, unused events and operator legs' channel events leave
    the state as it is.
    """
    key = call_key(event)
    if key is None or not isinstance(event, ChannelEvent):
        return state, False
    if state is None:
        if not _may_open(event):
            return None, False
        current = CallState(
            uniqueid=key,
            linkedid=event.linkedid,
            channel=event.channel,
            state=CallStatus.OFFERED,
            offered_at=event.at,
        )
    elif state.uniqueid != key:
        return state, False
    else:
        current = state
    new = _derive(_merge(current, event))
    return new, new != state


def _may_open(event: ChannelEvent) -> bool:
    if isinstance(event, QueueEvent):
        return True
    return event.linkedid in ("", event.uniqueid)


def _merge(s: CallState, e: ChannelEvent) -> CallState:
    # A copy only when something changes: most events change nothing here, and copying call
    # states showed in the events worker's profile (bench/README, issue 13).
    linkedid, channel = s.linkedid or e.linkedid, s.channel or e.channel
    offered_at = min(s.offered_at, e.at)
    if linkedid != s.linkedid or channel != s.channel or offered_at != s.offered_at:
        s = replace(s, linkedid=linkedid, channel=channel, offered_at=offered_at)
    if isinstance(e, QueueEvent):
        s = _merge_queue(s, e)
    if isinstance(e, AgentEvent) and e.overflow:
        s = replace(s, overflowed_at=_earliest(s.overflowed_at, e.at))
    if isinstance(e, CallerJoinedQueue):
        s = replace(s, enqueued_at=_earliest(s.enqueued_at, e.at))
    elif isinstance(e, AgentRinging):
        s = replace(s, ringing_at=_earliest(s.ringing_at, e.at))
    elif isinstance(e, AgentAnswered):
        # A transfer back into the queue can bring a second answer: the earliest one names the
        # operator (ties: a named member first, then by name), so arrival order never decides.
        answer_key = (e.at, not e.operator, e.operator)
        if s.answered_at is None or answer_key < (
            s.answered_at,
            s.operator is None,
            s.operator or "",
        ):
            s = replace(s, operator=e.operator or None)
        s = replace(
            s,
            answered_at=_earliest(s.answered_at, e.at),
            hold_seconds=_smallest(s.hold_seconds, e.hold_seconds),
        )
    elif isinstance(e, AgentFinished):
        if e.operator and s.answered_at is None:
            # No AgentConnect seen (yet): the completing member is the best guess until one is.
            s = replace(s, operator=min(s.operator or e.operator, e.operator))
        if s.completed_at is None or (e.at, e.reason) > (s.completed_at, s.completed_by or ""):
            s = replace(s, completed_at=e.at, completed_by=e.reason or None)
        s = replace(
            s,
            hold_seconds=_smallest(s.hold_seconds, e.hold_seconds),
            talk_seconds=_largest(s.talk_seconds, e.talk_seconds),
        )
    elif isinstance(e, CallerAbandoned):
        s = replace(
            s,
            abandoned_at=_earliest(s.abandoned_at, e.at),
            hold_seconds=_smallest(s.hold_seconds, e.hold_seconds),
        )
    elif isinstance(e, ChannelHungUp):
        # The latest Hangup wins, ties broken by its content: a total order, so order-free.
        hangup_key = (e.at, _rank(e.cause), e.cause_txt)
        if s.hungup_at is None or hangup_key > (
            s.hungup_at,
            _rank(s.hangup_cause),
            s.hangup_cause_txt or "",
        ):
            s = replace(
                s, hungup_at=e.at, hangup_cause=e.cause, hangup_cause_txt=e.cause_txt or None
            )
    return s


def _merge_queue(s: CallState, e: QueueEvent) -> CallState:
    # The queue of the earliest join; until a join is seen, any queue event tells (by name).
    if isinstance(e, CallerJoinedQueue):
        new_key = (e.at, not e.queue, e.queue)
        if s.enqueued_at is None or new_key < (s.enqueued_at, s.queue is None, s.queue or ""):
            return replace(s, queue=e.queue or None)
        return s
    if s.enqueued_at is None and e.queue:
        return replace(s, queue=min(s.queue or e.queue, e.queue))
    return s


def _rank(cause: int | None) -> int:
    return -1 if cause is None else cause


def _derive(s: CallState) -> CallState:
    reached_queue = s.enqueued_at is not None or s.ringing_at is not None
    abandoned = s.abandoned_at is not None or (
        s.hungup_at is not None and reached_queue and s.answered_at is None
    )
    if abandoned:
        status = CallStatus.ABANDONED
    elif s.hungup_at is not None:
        status = CallStatus.ENDED
    elif s.answered_at is not None:
        status = CallStatus.ANSWERED
    elif s.ringing_at is not None:
        status = CallStatus.RINGING
    elif s.enqueued_at is not None:
        status = CallStatus.QUEUED
    else:
        status = CallStatus.OFFERED
    ended_at = None
    if s.hungup_at is not None or s.abandoned_at is not None:
        marks = (s.hungup_at, s.abandoned_at, s.answered_at)
        ended_at = max(t for t in marks if t is not None)
    if status is s.state and abandoned == s.abandoned and ended_at == s.ended_at:
        return s
    return replace(s, state=status, abandoned=abandoned, ended_at=ended_at)


def _earliest(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else min(a, b)


def _smallest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _largest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)
