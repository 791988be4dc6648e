"""The call-state reducer: lifecycle, replays, out-of-order events, and order independence."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siaga112.telephony.ami_events import (
    AgentAnswered,
    AgentFinished,
    AgentNoAnswer,
    AgentRinging,
    AmiEvent,
    CallerAbandoned,
    CallerJoinedQueue,
    CallerLeftQueue,
    CallEvent,
    ChannelCreated,
    ChannelHungUp,
    ChannelStateChanged,
    FullyBooted,
    Malformed,
)
from siaga112.telephony.tracker import CallState, CallStatus, apply_event, call_key

T0 = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
CALLER = "1735718400.1"
CALLER_CHANNEL = "PJSIP/carrier-00000001"


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Leg(TypedDict):
    at: datetime
    received_at: datetime
    uniqueid: str
    linkedid: str
    channel: str
    caller_num: str
    caller_name: str


class Member(TypedDict):
    queue: str
    interface: str
    member_name: str
    operator: str
    dest_uniqueid: str
    dest_channel: str
    overflow: bool


def leg(at: float, uniqueid: str = CALLER, channel: str = CALLER_CHANNEL) -> Leg:
    """Channel fields; every leg of the call shares the caller's Linkedid."""
    return Leg(
        at=t(at),
        received_at=t(at),
        uniqueid=uniqueid,
        linkedid=CALLER,
        channel=channel,
        caller_num="081234567890",
        caller_name="",
    )


def created(at: float, uniqueid: str = CALLER, channel: str = CALLER_CHANNEL) -> ChannelCreated:
    return ChannelCreated(
        **leg(at, uniqueid, channel),
        context="from-carrier",
        exten="112",
    )


def up(at: float) -> ChannelStateChanged:
    return ChannelStateChanged(**leg(at), state=6, state_desc="Up")


def hangup(
    at: float, uniqueid: str = CALLER, cause: int = 16, channel: str = CALLER_CHANNEL
) -> ChannelHungUp:
    return ChannelHungUp(
        **leg(at, uniqueid, channel),
        cause=cause,
        cause_txt="Normal Clearing",
    )


def joined(at: float, queue: str = "emergency") -> CallerJoinedQueue:
    return CallerJoinedQueue(**leg(at), queue=queue, position=1, count=1)


def left(at: float) -> CallerLeftQueue:
    return CallerLeftQueue(**leg(at), queue="emergency", position=1, count=0)


def abandoned(at: float, hold: int) -> CallerAbandoned:
    return CallerAbandoned(
        **leg(at),
        queue="emergency",
        position=1,
        original_position=1,
        hold_seconds=hold,
    )


def member(ext: str, queue: str = "emergency") -> Member:
    """An operator, or with ext "overflow:<target>" an overflow destination."""
    if ext.startswith("overflow:"):
        target = ext.removeprefix("overflow:")
        return Member(
            queue=queue,
            interface=f"Local/{target}@siaga112-overflow/n",
            member_name=ext,
            operator=ext,
            dest_uniqueid=f"agent-{target}",
            dest_channel=f"Local/{target}@siaga112-overflow-00000004;1",
            overflow=True,
        )
    return Member(
        queue=queue,
        interface=f"PJSIP/{ext}" if ext else "",
        member_name=ext,
        operator=ext,
        dest_uniqueid=f"agent-{ext}",
        dest_channel=f"PJSIP/{ext}-00000002",
        overflow=False,
    )


def ringing(at: float, ext: str) -> AgentRinging:
    return AgentRinging(**leg(at), **member(ext))


def no_answer(at: float, ext: str) -> AgentNoAnswer:
    return AgentNoAnswer(**leg(at), **member(ext), ring_ms=15000)


def answered(at: float, ext: str, hold: int) -> AgentAnswered:
    return AgentAnswered(
        **leg(at),
        **member(ext),
        hold_seconds=hold,
        ring_seconds=2,
    )


def finished(at: float, ext: str, hold: int, talk: int, reason: str = "caller") -> AgentFinished:
    return AgentFinished(
        **leg(at),
        **member(ext),
        hold_seconds=hold,
        talk_seconds=talk,
        reason=reason,
    )


def answered_call() -> list[CallEvent]:
    """Ringall to 6001 and 6002: nobody answers the first round, 6001 answers the second."""
    return [
        created(0),
        up(0.1),
        joined(2),
        ringing(2, "6001"),
        ringing(2, "6002"),
        created(2, "agent-6001", "PJSIP/6001-00000002"),
        created(2, "agent-6002", "PJSIP/6002-00000003"),
        no_answer(17, "6001"),
        no_answer(17, "6002"),
        hangup(17, "agent-6001", 19, "PJSIP/6001-00000002"),
        hangup(17, "agent-6002", 19, "PJSIP/6002-00000003"),
        ringing(18, "6001"),
        ringing(18, "6002"),
        answered(20, "6001", hold=18),
        left(20),
        hangup(20, "agent-6002", 26, "PJSIP/6002-00000003"),
        finished(80, "6001", hold=18, talk=60),
        hangup(80),
        hangup(80, "agent-6001", 16, "PJSIP/6001-00000002"),
    ]


def abandoned_call() -> list[CallEvent]:
    return [
        created(0),
        up(0.1),
        joined(2),
        ringing(2, "6001"),
        created(2, "agent-6001", "PJSIP/6001-00000002"),
        abandoned(9, hold=7),
        left(9),
        hangup(9),
        hangup(9, "agent-6001", 16, "PJSIP/6001-00000002"),
    ]


def dropped_before_queue() -> list[CallEvent]:
    return [created(0), up(0.1), hangup(1)]


def fold(events: Iterable[AmiEvent]) -> dict[str, CallState]:
    """Route each event by its call key, as the tracking service does."""
    states: dict[str, CallState] = {}
    for event in events:
        key = call_key(event)
        if key is None:
            continue
        new, _changed = apply_event(states.get(key), event)
        if new is not None:
            states[key] = new
    return states


def final(events: Iterable[AmiEvent]) -> CallState:
    return fold(events)[CALLER]


def test_answered_call_ends_with_operator_hold_and_talk_times() -> None:
    state = final(answered_call())
    assert state.state is CallStatus.ENDED
    assert state.abandoned is False
    assert state.linkedid == CALLER
    assert state.channel == CALLER_CHANNEL
    assert state.queue == "emergency"
    assert state.operator == "6001"
    assert (state.offered_at, state.enqueued_at, state.ringing_at) == (t(0), t(2), t(2))
    assert (state.answered_at, state.ended_at) == (t(20), t(80))
    assert (state.hold_seconds, state.talk_seconds, state.completed_by) == (18, 60, "caller")
    assert (state.hangup_cause, state.hangup_cause_txt) == (16, "Normal Clearing")


def test_status_moves_offered_queued_ringing_answered_ended() -> None:
    statuses = []
    state: CallState | None = None
    events: list[CallEvent] = [
        created(0),
        joined(2),
        ringing(2, "6001"),
        answered(5, "6001", 3),
        hangup(9),
    ]
    for event in events:
        state, changed = apply_event(state, event)
        assert changed
        assert state is not None
        statuses.append(state.state)
    assert statuses == ["offered", "queued", "ringing", "answered", "ended"]


def test_operator_legs_never_open_a_call() -> None:
    states = fold(answered_call())
    assert list(states) == [CALLER]
    state, changed = apply_event(None, hangup(5, "agent-6001", channel="PJSIP/6001-00000002"))
    assert (state, changed) == (None, False)


def test_event_for_another_call_leaves_the_state_alone() -> None:
    state = final([created(0)])
    other = replace(hangup(3), uniqueid="9.9", linkedid="9.9")
    assert apply_event(state, other) == (state, False)


@pytest.mark.parametrize(
    "event",
    [
        FullyBooted(at=t(1), received_at=t(1), status="Fully Booted"),
        Malformed(at=t(1), received_at=t(1), event_name="Hangup", reason="no Uniqueid"),
    ],
)
def test_non_call_events_change_nothing(event: AmiEvent) -> None:
    state = final([created(0)])
    assert apply_event(state, event) == (state, False)
    assert apply_event(None, event) == (None, False)
    assert call_key(event) is None


def test_replayed_event_is_no_change() -> None:
    events = answered_call()
    state = final(events)
    for event in events:
        if call_key(event) == CALLER:
            assert apply_event(state, event) == (state, False)


def test_abandoned_call_keeps_hold_time_and_is_terminal() -> None:
    state = final(abandoned_call())
    assert state.state is CallStatus.ABANDONED
    assert state.abandoned is True
    assert (state.abandoned_at, state.ended_at, state.hold_seconds) == (t(9), t(9), 7)
    assert state.answered_at is None
    assert state.operator is None
    later, _ = apply_event(state, ringing(12, "6002"))
    assert later is not None
    assert later.state is CallStatus.ABANDONED


def test_hangup_in_queue_without_abandon_event_counts_as_abandoned() -> None:
    state = final([created(0), joined(2), hangup(6)])
    assert state.state is CallStatus.ABANDONED
    assert state.ended_at == t(6)


def test_late_answer_corrects_an_abandonment_that_was_only_inferred() -> None:
    state = final([created(0), joined(2), hangup(30)])
    assert state.state is CallStatus.ABANDONED
    later, changed = apply_event(state, answered(5, "6001", 3))
    assert changed
    assert later is not None
    assert (later.state, later.abandoned) == (CallStatus.ENDED, False)


def test_hangup_before_reaching_the_queue_is_ended_not_abandoned() -> None:
    state = final(dropped_before_queue())
    assert state.state is CallStatus.ENDED
    assert state.abandoned is False
    assert state.answered_at is None


def test_agent_connect_before_queue_join_still_answers_and_fills_in_the_queue_time() -> None:
    state = final([answered(20, "6001", 18), created(0), joined(2)])
    assert state.state is CallStatus.ANSWERED
    assert (state.offered_at, state.enqueued_at, state.answered_at) == (t(0), t(2), t(20))


def test_queue_event_alone_opens_the_call_midway() -> None:
    state, changed = apply_event(None, joined(2))
    assert changed
    assert state is not None
    assert (state.state, state.offered_at, state.queue) == (CallStatus.QUEUED, t(2), "emergency")


def test_hangup_before_agent_complete_still_records_talk_time() -> None:
    state = final([created(0), joined(2), answered(20, "6001", 18), hangup(80)])
    assert state.state is CallStatus.ENDED
    later, changed = apply_event(state, finished(80, "6001", 18, 60))
    assert changed
    assert later is not None
    assert (later.state, later.talk_seconds, later.ended_at) == (CallStatus.ENDED, 60, t(80))


def test_answered_at_is_the_first_answer_whatever_the_order() -> None:
    first, second = answered(20, "6001", 18), answered(50, "6002", 40)
    for events in ([first, second], [second, first]):
        state = final([created(0), *events])
        assert (state.answered_at, state.operator) == (t(20), "6001")


def test_ended_at_never_precedes_answered_at() -> None:
    state = final([created(0), hangup(5), answered(10, "6001", 3)])
    assert state.answered_at == t(10)
    assert state.ended_at == t(10)


def test_ended_never_returns_to_a_live_status() -> None:
    state = final([created(0), hangup(5)])
    events: list[CallEvent] = [joined(1), ringing(2, "6001"), answered(3, "6001", 1), up(4)]
    for event in events:
        state2, _ = apply_event(state, event)
        assert state2 is not None
        assert state2.state.is_terminal
        state = state2


def test_operator_from_agent_complete_when_connect_was_missed() -> None:
    state = final([created(0), finished(80, "6003", 18, 60), hangup(80)])
    assert state.operator == "6003"
    # A later AgentConnect is the better witness of who answered.
    state2, _ = apply_event(state, answered(20, "6001", 18))
    assert state2 is not None
    assert state2.operator == "6001"


def test_transfer_back_to_queue_keeps_first_operator_and_last_completion_reason() -> None:
    events: list[CallEvent] = [
        created(0),
        joined(1),
        answered(5, "6001", 4),
        finished(30, "6001", 4, 25, reason="transfer"),
        joined(31),
        answered(40, "6002", 9),
        finished(90, "6002", 9, 50, reason="agent"),
        hangup(90),
    ]
    state = final(events)
    assert (state.operator, state.answered_at, state.enqueued_at) == ("6001", t(5), t(1))
    assert (state.completed_by, state.completed_at, state.talk_seconds) == ("agent", t(90), 50)
    assert state.state is CallStatus.ENDED


NEIGHBOUR = "overflow:+62215550112"


def overflowed_call() -> list[CallEvent]:
    """6001 rings alone and does not answer; after the wait 6001 and the neighbouring centre
    ring together and the centre answers."""
    return [
        created(0),
        up(0.1),
        joined(2),
        ringing(2, "6001"),
        no_answer(17, "6001"),
        ringing(33, "6001"),
        ringing(33, NEIGHBOUR),
        answered(36, NEIGHBOUR, hold=34),
        left(36),
        finished(90, NEIGHBOUR, hold=34, talk=54),
        hangup(90),
    ]


def test_overflow_is_recorded_when_an_overflow_destination_first_rings() -> None:
    state = final(overflowed_call())
    assert state.overflowed_at == t(33)
    assert (state.operator, state.ringing_at, state.answered_at) == (NEIGHBOUR, t(2), t(36))
    assert state.state is CallStatus.ENDED


def test_operators_alone_never_mark_a_call_overflowed() -> None:
    assert final(answered_call()).overflowed_at is None


def test_overflow_answer_alone_still_marks_the_call_overflowed() -> None:
    # AgentCalled missed (siaga112 reconnecting): the answer tells it too.
    events = [e for e in overflowed_call() if not isinstance(e, AgentRinging)]
    assert final(events).overflowed_at == t(36)


SCENARIOS = {
    "answered": answered_call,
    "abandoned": abandoned_call,
    "dropped": dropped_before_queue,
    "overflowed": overflowed_call,
}


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(SCENARIOS)),
    st.randoms(use_true_random=False),
    st.lists(st.integers(min_value=0, max_value=100), max_size=10),
)
def test_any_permutation_or_duplication_gives_the_ordered_final_state(
    name: str, rnd: object, duplicates: list[int]
) -> None:
    ordered = SCENARIOS[name]()
    expected = fold(ordered)
    mixed: list[CallEvent] = list(ordered)
    mixed += [ordered[i % len(ordered)] for i in duplicates]
    rnd.shuffle(mixed)  # type: ignore[attr-defined]
    assert fold(mixed) == expected


# Arbitrary events about one call (same caller leg identity, everything else random): whatever
# they say and in whatever order they come, folding them is order-free and keeps the invariants.
REASONS = ["", "caller", "agent", "transfer"]


@st.composite
def any_event(draw: st.DrawFn) -> CallEvent:
    at = draw(st.integers(min_value=0, max_value=6))
    uniqueid = draw(st.sampled_from([CALLER, CALLER, CALLER, "agent-1"]))
    ids = leg(at, uniqueid, CALLER_CHANNEL if uniqueid == CALLER else "PJSIP/6001-00000002")
    caller_ids = leg(at)
    queue = draw(st.sampled_from(["", "emergency", "emergency-low"]))
    agent = member(draw(st.sampled_from(["", "6001", "6002", NEIGHBOUR])), queue)
    n1, n2 = (draw(st.one_of(st.none(), st.integers(0, 100))) for _ in range(2))
    kind = draw(st.integers(min_value=0, max_value=9))
    event: CallEvent
    if kind == 0:
        event = ChannelCreated(**ids, context="", exten="")
    elif kind == 1:
        event = ChannelStateChanged(**ids, state=n1, state_desc="")
    elif kind == 2:
        event = ChannelHungUp(**ids, cause=n1, cause_txt=str(n1 or ""))
    elif kind == 3:
        event = CallerJoinedQueue(**caller_ids, queue=queue, position=n1, count=n2)
    elif kind == 4:
        event = CallerLeftQueue(**caller_ids, queue=queue, position=n1, count=n2)
    elif kind == 5:
        event = CallerAbandoned(
            **caller_ids,
            queue=queue,
            position=1,
            original_position=1,
            hold_seconds=n1,
        )
    elif kind == 6:
        event = AgentRinging(**caller_ids, **agent)
    elif kind == 7:
        event = AgentNoAnswer(**caller_ids, **agent, ring_ms=n1)
    elif kind == 8:
        event = AgentAnswered(**caller_ids, **agent, hold_seconds=n1, ring_seconds=n2)
    else:
        reason = draw(st.sampled_from(REASONS))
        event = AgentFinished(
            **caller_ids,
            **agent,
            hold_seconds=n1,
            talk_seconds=n2,
            reason=reason,
        )
    return event


@settings(max_examples=500)
@given(st.lists(any_event(), max_size=14), st.randoms(use_true_random=False))
def test_folding_any_events_of_one_call_is_order_free(
    events: Sequence[CallEvent], rnd: object
) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fold(shuffled) == fold(events)


@settings(max_examples=500)
@given(st.lists(any_event(), max_size=14))
def test_invariants_hold_after_every_event(events: Sequence[CallEvent]) -> None:
    state: CallState | None = None
    for event in events:
        if call_key(event) != CALLER:
            continue
        before = state
        state, changed = apply_event(state, event)
        assert state is not None
        assert changed == (state != before)
        assert state.abandoned == (state.state is CallStatus.ABANDONED)
        if state.answered_at is not None and state.ended_at is not None:
            assert state.ended_at >= state.answered_at
        if before is not None:
            if before.state.is_terminal:
                assert state.state.is_terminal
            if before.abandoned_at is not None:
                assert state.state is CallStatus.ABANDONED
            if before.answered_at is not None:
                assert state.answered_at is not None
                assert state.answered_at <= before.answered_at
            assert state.offered_at <= before.offered_at
        replayed, again = apply_event(state, event)
        assert (replayed, again) == (state, False)
