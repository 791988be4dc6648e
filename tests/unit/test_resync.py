"""Resynchronisation after an AMI (re)login, replayed from the real Asterisk's answers to
QueueStatus and CoreShowChannels (tests/fixtures/ami/resync-during-answered-call.txt): a
caller already talking to an operator, and callers waiting, become the tracker's calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from siaga112.telephony.ami_events import parse_event, split_transcript
from siaga112.telephony.resync import (
    connected_caller_events,
    connected_callers,
    waiting_caller_event,
)
from siaga112.telephony.tracker import CallState, CallStatus, apply_event, call_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)


def captured(action_id: str) -> list[dict[str, object]]:
    messages = split_transcript((FIXTURES / "resync-during-answered-call.txt").read_text())
    return [m for m in messages if m.get("ActionID") == action_id]


def fold(messages: list[dict[str, str]]) -> dict[str, CallState]:
    states: dict[str, CallState] = {}
    for message in messages:
        event = parse_event(message, received_at=NOW)
        assert event is not None
        key = call_key(event)
        assert key is not None
        new, _ = apply_event(states.get(key), event)
        if new is not None:
            states[key] = new
    return states


def test_caller_bridged_to_an_operator_is_found_with_queue_and_operator() -> None:
    (caller,) = connected_callers(captured("probe-channels"), now=NOW)
    assert (caller.uniqueid, caller.linkedid) == ("1795422293.0", "1795422293.0")
    assert caller.channel == "PJSIP/carrier-00000000"
    assert (caller.caller_num, caller.queue) == ("+6281234567890", "emergency")
    assert (caller.operator_channel, caller.operator_uniqueid) == (
        "PJSIP/6001-00000001",
        "1795422293.1",
    )
    # Duration 00:00:03: the channel has existed for three seconds.
    assert caller.offered_at == NOW - timedelta(seconds=3)


def test_connected_caller_folds_into_an_answered_call_of_the_queue() -> None:
    (caller,) = connected_callers(captured("probe-channels"), now=NOW)
    states = fold(connected_caller_events(caller, now=NOW))
    assert list(states) == ["1795422293.0"]
    state = states["1795422293.0"]
    assert state.state is CallStatus.ANSWERED
    assert (state.queue, state.operator) == ("emergency", "6001")
    assert state.offered_at == NOW - timedelta(seconds=3)
    assert state.answered_at == NOW


def test_operator_legs_waiting_or_unbridged_channels_are_not_callers() -> None:
    entries = captured("probe-channels")
    operator_leg = next(e for e in entries if e.get("Channel") == "PJSIP/6001-00000001")
    caller_leg = next(e for e in entries if e.get("Channel") == "PJSIP/carrier-00000000")
    # Alone in its bridge (the operator leg already gone): nobody to name as operator.
    assert connected_callers([caller_leg], now=NOW) == []
    # Still waiting in Queue(): no bridge yet (QueueStatus covers it).
    waiting = {**caller_leg, "BridgeId": ""}
    assert connected_callers([waiting, operator_leg], now=NOW) == []
    # Another context (an operator's own call) is no 112 caller.
    other = {**caller_leg, "Context": "operators"}
    assert connected_callers([other, operator_leg], now=NOW) == []


def test_garbled_duration_counts_as_no_age() -> None:
    entries = [
        {**e, "Duration": "soon"} if e.get("Context") == "from-carrier" else e
        for e in captured("probe-channels")
    ]
    (caller,) = connected_callers(entries, now=NOW)
    assert caller.offered_at == NOW


def test_queue_entry_becomes_a_join_at_its_wait_and_other_items_nothing() -> None:
    entry = {
        "Event": "QueueEntry",
        "Queue": "emergency",
        "Position": "1",
        "Uniqueid": "1795422400.4",
        "Channel": "PJSIP/carrier-00000004",
        "CallerIDNum": "+6281234567891",
        "CallerIDName": "<unknown>",
        "Wait": "12",
    }
    message = waiting_caller_event(entry, now=NOW)
    assert message is not None
    state = fold([message])["1795422400.4"]
    assert state.state is CallStatus.QUEUED
    assert state.enqueued_at == NOW - timedelta(seconds=12)
    assert waiting_caller_event({**entry, "Event": "QueueMember"}, now=NOW) is None
    assert waiting_caller_event({**entry, "Uniqueid": ""}, now=NOW) is None
    for item in captured("probe-queues"):
        assert waiting_caller_event(item, now=NOW) is None
