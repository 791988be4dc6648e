"""Replays of transcripts captured from the real Asterisk 22: parsed and folded without sockets."""

from __future__ import annotations

import random
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from siaga112.telephony.agi_request import parse_incoming_call
from siaga112.telephony.ami_events import (
    AgentAnswered,
    AgentFinished,
    AgentRinging,
    AmiEvent,
    Malformed,
    parse_event,
    split_transcript,
)
from siaga112.telephony.tracker import CallState, CallStatus, apply_event, call_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)
# Events the tracker folds; the transcript must turn each of them into a call event.
USED = {
    "Newchannel",
    "Newstate",
    "Hangup",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentCalled",
    "AgentConnect",
    "AgentComplete",
    "AgentRingNoAnswer",
}


def ts(stamp: str) -> datetime:
    return datetime.fromtimestamp(float(stamp), tz=UTC)


def events_of(name: str) -> list[AmiEvent]:
    text = (FIXTURES / "ami" / name).read_text()
    parsed = (parse_event(m, received_at=RECEIVED) for m in split_transcript(text))
    return [e for e in parsed if e is not None]


def fold(events: list[AmiEvent]) -> dict[str, CallState]:
    states: dict[str, CallState] = {}
    for event in events:
        key = call_key(event)
        if key is None:
            continue
        new, _ = apply_event(states.get(key), event)
        if new is not None:
            states[key] = new
    return states


RESYNC = "resync-during-answered-call.txt"


def test_every_used_event_in_the_capture_parses_with_its_time() -> None:
    text = (FIXTURES / "ami" / RESYNC).read_text()
    messages = split_transcript(text)
    used = [m for m in messages if m.get("Event") in USED]
    assert len(used) >= 10
    for message in used:
        event = parse_event(message, received_at=RECEIVED)
        assert event is not None
        assert not isinstance(event, Malformed)
        assert event.at == ts(str(message["Timestamp"]))


def test_action_responses_and_list_items_in_the_capture_are_ignored() -> None:
    messages = split_transcript((FIXTURES / "ami" / RESYNC).read_text())
    listed = [m for m in messages if "ActionID" in m]
    assert any(m.get("Event") == "CoreShowChannel" for m in listed)
    assert all(parse_event(m, received_at=RECEIVED) is None for m in listed)


def test_agent_events_name_the_caller_leg_and_the_operator_leg() -> None:
    agent_events = [e for e in events_of(RESYNC) if isinstance(e, AgentRinging | AgentAnswered)]
    assert agent_events
    for e in agent_events:
        assert (e.uniqueid, e.linkedid) == ("1795422293.0", "1795422293.0")
        assert e.channel == "PJSIP/carrier-00000000"
        assert (e.dest_uniqueid, e.dest_channel) == ("1795422293.1", "PJSIP/6001-00000001")
        # No member name configured: Asterisk repeats the interface as MemberName.
        assert (e.interface, e.member_name, e.operator) == ("PJSIP/6001", "PJSIP/6001", "6001")


def test_resync_capture_folds_into_one_answered_then_ended_call() -> None:
    states = fold(events_of(RESYNC))
    # The operator leg (1795422293.1) has its own Newchannel/Newstate/Hangup but is no call.
    assert list(states) == ["1795422293.0"]
    state = states["1795422293.0"]
    assert state.state is CallStatus.ENDED
    assert state.abandoned is False
    assert (state.linkedid, state.channel) == ("1795422293.0", "PJSIP/carrier-00000000")
    assert (state.queue, state.operator) == ("emergency", "6001")
    assert state.offered_at == ts("1795422293.107596")
    assert state.enqueued_at == ts("1795422293.611578")
    assert state.ringing_at == ts("1795422293.612537")
    assert state.answered_at == ts("1795422294.633917")
    assert state.ended_at == ts("1795422299.131088")
    assert (state.hold_seconds, state.talk_seconds, state.completed_by) == (1, 5, "caller")
    assert (state.hangup_cause, state.hangup_cause_txt) == (16, "Normal Clearing")


def test_resync_capture_agent_complete_reports_talk_time() -> None:
    (complete,) = [e for e in events_of(RESYNC) if isinstance(e, AgentFinished)]
    assert (complete.hold_seconds, complete.talk_seconds, complete.reason) == (1, 5, "caller")


@pytest.mark.parametrize("seed", range(20))
def test_resync_capture_shuffled_and_replayed_gives_the_same_call(seed: int) -> None:
    events = events_of(RESYNC)
    mixed = events + events[::3]
    random.Random(seed).shuffle(mixed)
    assert fold(mixed) == fold(events)


ANSWERED = "answered-call.txt"
ABANDONED = "abandoned-call.txt"


def test_answered_capture_ends_answered_by_operator_6001() -> None:
    states = fold(events_of(ANSWERED))
    assert list(states) == ["1795422356.8"]
    state = states["1795422356.8"]
    assert state.state is CallStatus.ENDED
    assert state.abandoned is False
    assert (state.linkedid, state.channel) == ("1795422356.8", "PJSIP/carrier-00000008")
    assert (state.queue, state.operator) == ("emergency", "6001")
    assert state.offered_at == ts("1795422356.523837")
    assert state.enqueued_at == ts("1795422357.032067")
    assert state.ringing_at == ts("1795422357.034751")
    assert state.answered_at == ts("1795422358.057024")
    assert state.completed_at == ts("1795422360.545243")
    assert state.ended_at == ts("1795422360.550217")
    assert (state.hold_seconds, state.talk_seconds, state.completed_by) == (1, 2, "caller")
    assert (state.hangup_cause, state.hangup_cause_txt) == (16, "Normal Clearing")


def test_answered_capture_passes_through_every_live_status_in_order() -> None:
    seen: list[CallStatus] = []
    state: CallState | None = None
    for event in events_of(ANSWERED):
        if call_key(event) != "1795422356.8":
            continue
        state, changed = apply_event(state, event)
        if changed and state is not None and (not seen or seen[-1] is not state.state):
            seen.append(state.state)
    assert seen == ["offered", "queued", "ringing", "answered", "ended"]


def test_abandoned_capture_ends_abandoned_without_operator() -> None:
    states = fold(events_of(ABANDONED))
    assert list(states) == ["1795422370.14"]
    state = states["1795422370.14"]
    assert state.state is CallStatus.ABANDONED
    assert state.abandoned is True
    assert (state.queue, state.operator, state.answered_at) == ("emergency", None, None)
    assert state.enqueued_at == ts("1795422370.954549")
    assert state.ringing_at == ts("1795422370.955954")
    assert state.abandoned_at == ts("1795422373.468605")
    assert state.ended_at == ts("1795422373.470996")
    assert state.hold_seconds == 3
    # Asterisk reports the abandoning caller's hangup as cause 0.
    assert (state.hangup_cause, state.hangup_cause_txt) == (0, "Unknown")


@pytest.mark.parametrize("name", [ANSWERED, ABANDONED])
@pytest.mark.parametrize("seed", range(10))
def test_real_captures_shuffled_and_replayed_give_the_same_call(name: str, seed: int) -> None:
    events = events_of(name)
    mixed = events + events[::2]
    random.Random(seed).shuffle(mixed)
    assert fold(mixed) == fold(events)


def agi_env(name: str) -> OrderedDict[str, str]:
    """The agi_* variables exactly as panoramisk's fast_agi handler splits them."""
    text = (FIXTURES / "agi" / name).read_text()
    lines = text[: text.index("\n\n")].split("\n")
    return OrderedDict(line.split(": ", 1) for line in lines if ": " in line)


OBSERVED_PAI = "<sip:+6281234567890@carrier.invalid;user=phone>"
OBSERVED_PANI = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"


def test_observed_request_has_no_linkedid_and_falls_back_to_the_ami_linkedid() -> None:
    env = agi_env("incoming-observed.txt")
    assert "agi_linkedid" not in env
    call = parse_incoming_call(env)
    # The same call in the AMI capture: the caller leg's Linkedid is its own Uniqueid.
    (state,) = fold(events_of(ANSWERED)).values()
    assert (call.uniqueid, call.linkedid) == (state.uniqueid, state.linkedid)


def test_observed_request_decodes_caller_pai_and_pani_without_problems() -> None:
    call = parse_incoming_call(agi_env("incoming-observed.txt"))
    assert call.problems == ()
    assert (call.channel, call.dialled_number) == ("PJSIP/carrier-00000008", "112")
    assert (call.caller_number, call.caller_name) == ("+6281234567890", "")
    assert call.caller_e164 == "+6281234567890"
    assert (call.presentation, call.caller_id_available) == ("allowed_not_screened", True)
    assert (call.pai, call.asserted_number) == (OBSERVED_PAI, "+6281234567890")
    assert call.pani == OBSERVED_PANI
    assert (call.geolocation, call.geoloc_effective, call.geoloc_method) == ("", "", "")


def test_observed_pidf_request_carries_the_effective_location_and_method() -> None:
    call = parse_incoming_call(agi_env("incoming-observed-pidf.txt"))
    assert call.problems == ()
    assert call.geolocation == "<cid:loc-1@carrier.invalid>"
    assert call.geoloc_effective == ('shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"')
    assert call.geoloc_method == "gps"
    assert call.asserted_number == "+6281234567891"


def test_observed_anonymous_request_has_no_caller_id_and_no_callback_number() -> None:
    call = parse_incoming_call(agi_env("incoming-observed-anonymous.txt"))
    assert call.problems == ()
    # Privacy: id without PAI: Asterisk still says allowed_not_screened; the number is gone.
    assert (call.caller_number, call.presentation) == ("anonymous", "allowed_not_screened")
    assert call.caller_id_available is False
    assert (call.pai, call.asserted_number, call.callback_number) == ("", None, None)


def test_observed_abandon_request_matches_the_abandoned_ami_capture() -> None:
    call = parse_incoming_call(agi_env("incoming-observed-abandon.txt"))
    assert call.problems == ()
    assert call.callback_number == "+6281234567892"
    (state,) = fold(events_of(ABANDONED)).values()
    assert (call.uniqueid, call.linkedid) == (state.uniqueid, state.linkedid)
    assert state.abandoned is True
