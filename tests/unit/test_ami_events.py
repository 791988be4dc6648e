"""AMI messages to call events: field names as Asterisk 22 documents them, and no raising."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from panoramisk.message import Message

from siaga112.telephony.ami_events import (
    AgentAnswered,
    AgentFinished,
    AgentNoAnswer,
    AgentRinging,
    CallerAbandoned,
    CallerJoinedQueue,
    CallerLeftQueue,
    ChannelCreated,
    ChannelHungUp,
    ChannelStateChanged,
    FullyBooted,
    Malformed,
    operator_from_interface,
    overflow_target,
    parse_event,
    split_transcript,
)

RECEIVED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
STAMP = "1732345678.123456"
STAMPED = datetime.fromtimestamp(1732345678.123456, tz=UTC)

CALLER = """\
Channel: PJSIP/carrier-00000007
ChannelState: 6
ChannelStateDesc: Up
CallerIDNum: 081234567890
CallerIDName: <unknown>
ConnectedLineNum: <unknown>
ConnectedLineName: <unknown>
Language: en
AccountCode:
Context: from-carrier
Exten: 112
Priority: 27
Uniqueid: 1732345678.14
Linkedid: 1732345678.14
"""

DEST = """\
DestChannel: PJSIP/6001-00000008
DestChannelState: 5
DestChannelStateDesc: Ringing
DestCallerIDNum: 6001
DestCallerIDName: <unknown>
DestConnectedLineNum: 081234567890
DestConnectedLineName: <unknown>
DestLanguage: en
DestAccountCode:
DestContext: operators
DestExten: 112
DestPriority: 1
DestUniqueid: 1732345680.15
DestLinkedid: 1732345678.14
"""


def ami(text: str) -> dict[str, object]:
    (message,) = split_transcript(text)
    return message


def event(name: str, *blocks: str, stamp: str | None = STAMP) -> dict[str, object]:
    head = f"Event: {name}\nPrivilege: agent,all\n"
    if stamp is not None:
        head += f"Timestamp: {stamp}\n"
    return ami(head + "".join(blocks))


def parse(msg: dict[str, object]) -> object:
    return parse_event(msg, received_at=RECEIVED)


def test_newchannel_becomes_channel_created_with_caller_fields() -> None:
    e = parse(event("Newchannel", CALLER))
    assert e == ChannelCreated(
        at=STAMPED,
        received_at=RECEIVED,
        uniqueid="1732345678.14",
        linkedid="1732345678.14",
        channel="PJSIP/carrier-00000007",
        caller_num="081234567890",
        caller_name="",
        context="from-carrier",
        exten="112",
    )


def test_newstate_carries_numeric_state() -> None:
    e = parse(event("Newstate", CALLER))
    assert isinstance(e, ChannelStateChanged)
    assert (e.state, e.state_desc) == (6, "Up")


def test_hangup_carries_cause_and_text() -> None:
    e = parse(event("Hangup", CALLER, "Cause: 16\nCause-txt: Normal Clearing\n"))
    assert isinstance(e, ChannelHungUp)
    assert (e.cause, e.cause_txt) == (16, "Normal Clearing")


def test_queue_caller_join_and_leave() -> None:
    joined = parse(event("QueueCallerJoin", CALLER, "Queue: emergency\nPosition: 2\nCount: 2\n"))
    left = parse(event("QueueCallerLeave", CALLER, "Queue: emergency\nPosition: 1\nCount: 0\n"))
    assert isinstance(joined, CallerJoinedQueue)
    assert (joined.queue, joined.position, joined.count) == ("emergency", 2, 2)
    assert isinstance(left, CallerLeftQueue)
    assert (left.queue, left.position, left.count) == ("emergency", 1, 0)


def test_queue_caller_abandon_has_hold_time_and_original_position() -> None:
    e = parse(
        event(
            "QueueCallerAbandon",
            CALLER,
            "Queue: emergency\nPosition: 1\nOriginalPosition: 3\nHoldTime: 42\n",
        )
    )
    assert isinstance(e, CallerAbandoned)
    assert (e.position, e.original_position, e.hold_seconds) == (1, 3, 42)
    assert e.uniqueid == "1732345678.14"


AGENT = "Queue: emergency\nMemberName: Operator 6001\nInterface: PJSIP/6001\n"


def test_agent_called_routes_on_the_caller_and_names_the_member_leg() -> None:
    e = parse(event("AgentCalled", CALLER, DEST, AGENT))
    assert isinstance(e, AgentRinging)
    assert e.uniqueid == "1732345678.14"
    assert e.channel == "PJSIP/carrier-00000007"
    assert e.dest_uniqueid == "1732345680.15"
    assert e.dest_channel == "PJSIP/6001-00000008"
    assert (e.queue, e.interface, e.member_name, e.operator) == (
        "emergency",
        "PJSIP/6001",
        "Operator 6001",
        "6001",
    )


OVERFLOW_AGENT = (
    "Queue: emergency\nMemberName: overflow:+62215550112\n"
    "Interface: Local/+62215550112@siaga112-overflow/n\n"
)


def test_overflow_member_is_marked_and_named_by_its_target_not_as_an_operator() -> None:
    dest = DEST.replace("PJSIP/6001-00000008", "Local/+62215550112@siaga112-overflow-0000000a;1")
    e = parse(event("AgentCalled", CALLER, dest, OVERFLOW_AGENT))
    assert isinstance(e, AgentRinging)
    assert (e.overflow, e.operator) == (True, "overflow:+62215550112")
    operator = parse(event("AgentCalled", CALLER, DEST, AGENT))
    assert isinstance(operator, AgentRinging)
    assert operator.overflow is False


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("Local/+62215550112@siaga112-overflow/n", "+62215550112"),
        ("Local/9001@siaga112-overflow-0000002a;1", "9001"),
        ("Local/9001@siaga112-overflow", "9001"),
        ("Local/6001@operators/n", None),
        ("Local/9001@siaga112-overflowing/n", None),
        ("PJSIP/6001", None),
        ("PJSIP/6001-0000002a", None),
        ("", None),
    ],
)
def test_overflow_target_is_read_from_member_interfaces_and_channels(
    value: str, target: str | None
) -> None:
    assert overflow_target(value) == target


def test_agent_connect_has_hold_and_ring_seconds() -> None:
    e = parse(event("AgentConnect", CALLER, DEST, AGENT, "RingTime: 3\nHoldTime: 5\n"))
    assert isinstance(e, AgentAnswered)
    assert (e.operator, e.hold_seconds, e.ring_seconds) == ("6001", 5, 3)


def test_agent_complete_has_talk_time_and_who_hung_up() -> None:
    e = parse(
        event("AgentComplete", CALLER, DEST, AGENT, "HoldTime: 5\nTalkTime: 61\nReason: caller\n")
    )
    assert isinstance(e, AgentFinished)
    assert (e.hold_seconds, e.talk_seconds, e.reason) == (5, 61, "caller")


def test_agent_ring_no_answer_keeps_milliseconds() -> None:
    e = parse(event("AgentRingNoAnswer", CALLER, DEST, AGENT, "RingTime: 15000\n"))
    assert isinstance(e, AgentNoAnswer)
    assert e.ring_ms == 15000


def test_operator_falls_back_to_dest_channel_when_interface_missing() -> None:
    e = parse(event("AgentConnect", CALLER, DEST, "Queue: emergency\n"))
    assert isinstance(e, AgentAnswered)
    assert e.operator == "6001"


def test_fully_booted_needs_no_channel() -> None:
    e = parse(ami("Event: FullyBooted\nPrivilege: system,all\nStatus: Fully Booted\n"))
    assert e == FullyBooted(at=RECEIVED, received_at=RECEIVED, status="Fully Booted")


def test_fully_booted_says_how_long_asterisk_has_been_running() -> None:
    e = parse(ami("Event: FullyBooted\nUptime: 64\nLastReload: 1\nStatus: Fully Booted\n"))
    assert isinstance(e, FullyBooted)
    assert e.uptime_s == 64


def test_without_timestamp_header_the_receive_time_is_used() -> None:
    e = parse(event("Newchannel", CALLER, stamp=None))
    assert isinstance(e, ChannelCreated)
    assert e.at == RECEIVED


@pytest.mark.parametrize("stamp", ["", "soon", "nan", "inf", "-1", "1e300", "12.5"])
def test_garbage_timestamp_falls_back_to_the_receive_time(stamp: str) -> None:
    e = parse(event("Newchannel", CALLER, stamp=stamp))
    assert isinstance(e, ChannelCreated)
    assert e.at == RECEIVED


def test_naive_receive_time_is_taken_as_utc() -> None:
    e = parse_event(event("Newchannel", CALLER, stamp=None), received_at=datetime(2025, 1, 1))
    assert isinstance(e, ChannelCreated)
    assert e.at == datetime(2025, 1, 1, tzinfo=UTC)


def test_used_event_without_uniqueid_is_malformed() -> None:
    e = parse(ami("Event: Hangup\nChannel: PJSIP/x-1\nCause: 16\n"))
    assert isinstance(e, Malformed)
    assert e.event_name == "Hangup"
    assert "Uniqueid" in e.reason


@pytest.mark.parametrize(
    "text",
    [
        "Event: VarSet\nUniqueid: 1.1\nVariable: X\nValue: 1\n",
        "Event: BridgeEnter\nUniqueid: 1.1\n",
        "Response: Success\nActionID: 1\nMessage: Authentication accepted\n",
        "Asterisk Call Manager/9.0.0\n",
    ],
)
def test_unused_events_and_responses_give_none(text: str) -> None:
    messages = split_transcript(text)
    assert all(parse(m) is None for m in messages)


def test_numeric_garbage_becomes_none_not_an_error() -> None:
    e = parse(
        event("QueueCallerJoin", CALLER, "Queue: q\nPosition: two\nCount: 99999999999999999\n")
    )
    assert isinstance(e, CallerJoinedQueue)
    assert (e.position, e.count) == (None, None)


def test_panoramisk_message_parses_the_same_as_a_dict() -> None:
    raw = "Event: AgentConnect\r\nTimestamp: " + STAMP + "\r\n"
    raw += (CALLER + DEST + AGENT + "RingTime: 3\nHoldTime: 5\n").replace("\n", "\r\n")
    message = Message.from_line(raw)
    from_panoramisk = parse_event(message, received_at=RECEIVED)
    from_dict = parse(event("AgentConnect", CALLER, DEST, AGENT, "RingTime: 3\nHoldTime: 5\n"))
    assert from_panoramisk == from_dict


def test_repeated_header_counts_by_its_first_value() -> None:
    msg = event("Hangup", CALLER, "Cause: 16\n")
    msg["ChanVariable"] = ["A=1", "B=2"]
    msg["Uniqueid"] = ["1732345678.14", "other"]
    e = parse(msg)
    assert isinstance(e, ChannelHungUp)
    assert e.uniqueid == "1732345678.14"


def test_keys_are_case_insensitive() -> None:
    e = parse({"event": "hangup", "UNIQUEID": "1.2", "cause": "17", "TimeStamp": STAMP})
    assert isinstance(e, ChannelHungUp)
    assert (e.uniqueid, e.cause, e.at) == ("1.2", 17, STAMPED)


@pytest.mark.parametrize(
    ("interface", "operator"),
    [
        ("PJSIP/6001", "6001"),
        ("SIP/6002", "6002"),
        ("Local/6003@operators/n", "6003"),
        ("PJSIP/6004-0000002a", "6004"),
        ("Local/6005@operators-00000001;1", "6005"),
        ("PJSIP/6006/sip:6006@127.0.0.1:5070", "6006"),
        ("6007", "6007"),
        ("", ""),
    ],
)
def test_operator_extension_from_member_interface(interface: str, operator: str) -> None:
    assert operator_from_interface(interface) == operator


def test_split_transcript_handles_crlf_banner_and_repeats() -> None:
    text = (
        "Asterisk Call Manager/9.0.0\r\n\r\nEvent: A\r\nX: 1\r\nX: 2\r\n\r\n\r\nEvent: B\r\nY: \r\n"
    )
    assert split_transcript(text) == [{"Event": "A", "X": ["1", "2"]}, {"Event": "B", "Y": ""}]


EVENT_NAMES = [
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
    "FullyBooted",
    "VarSet",
]
FIELD_NAMES = [
    "Uniqueid",
    "Linkedid",
    "Channel",
    "CallerIDNum",
    "CallerIDName",
    "Timestamp",
    "Queue",
    "Position",
    "Count",
    "OriginalPosition",
    "HoldTime",
    "TalkTime",
    "RingTime",
    "Reason",
    "Interface",
    "MemberName",
    "DestChannel",
    "DestUniqueid",
    "Cause",
    "Cause-txt",
    "ChannelState",
]
values = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.floats(allow_nan=True).map(str),
    st.lists(st.text(max_size=5), max_size=3),
    st.none(),
    st.integers(),
)


@settings(max_examples=500)
@given(
    st.sampled_from(EVENT_NAMES),
    st.dictionaries(st.sampled_from(FIELD_NAMES), values),
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC))),
)
def test_any_message_parses_without_raising(
    name: str, fields: dict[str, object], received_at: datetime
) -> None:
    e = parse_event({"Event": name, **fields}, received_at=received_at)
    if e is not None:
        assert e.at.tzinfo is not None


@given(st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), values))
def test_arbitrary_mapping_never_raises(msg: dict[object, object]) -> None:
    parse_event(msg, received_at=RECEIVED)  # type: ignore[arg-type]


@given(st.text(max_size=300))
def test_split_transcript_never_raises(text: str) -> None:
    for message in split_transcript(text):
        parse_event(message, received_at=RECEIVED)
