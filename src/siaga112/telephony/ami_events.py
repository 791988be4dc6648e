"""Turn AMI event messages into typed, frozen call events.

Input is one AMI message as panoramisk gives it (``panoramisk.Message``: a case-insensitive
mapping whose values are ``str``, or a ``list`` of ``str`` when a header repeats) or a plain
``dict`` (replayed transcripts). Lookups here are case-insensitive and a repeated header counts by
its first value, so both work the same.

Which channel is which: Queue* and Agent* events describe the *caller* channel in
``Channel``/``Uniqueid``/``Linkedid`` and, for Agent* events, the queue member's channel in
``DestChannel``/``DestUniqueid``/``DestLinkedid`` (Asterisk 22 AMI event documentation). The
member itself is ``Interface`` (e.g. ``PJSIP/6001``) and ``MemberName``. Newchannel, Newstate and
Hangup are raised for every channel, operators' legs included; their Linkedid ties an operator leg
to the caller leg.

Time: with ``timestampevents=yes`` in manager.conf every event carries ``Timestamp:
<epoch seconds>.<microseconds>``; that is the event's time. Without it (or when it is garbage) the
receive time the caller passes in is used, and ``at == received_at`` tells so.

Durations are the integers Asterisk sends (``app_queue.c``): HoldTime, TalkTime and the
AgentConnect RingTime are seconds; the AgentRingNoAnswer RingTime is milliseconds.

Errors: :func:`parse_event` never raises. It returns None for messages that are not events or
events siaga112 does not use (most of the stream, if the manager filters let them through), and a
:class:`Malformed` event for a used event it cannot route (no ``Uniqueid``): those are worth
counting and logging, whereas unused events are not.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeAlias, TypedDict

from siaga112.callcontrol.protocol import OVERFLOW_MEMBER_PREFIX

__all__ = [
    "MEMBER_CHANGE_EVENTS",
    "OVERFLOW_CONTEXT",
    "OVERFLOW_MEMBER_PREFIX",
    "USED_EVENTS",
    "AgentAnswered",
    "AgentEvent",
    "AgentFinished",
    "AgentNoAnswer",
    "AgentRinging",
    "AmiEvent",
    "CallEvent",
    "CallerAbandoned",
    "CallerJoinedQueue",
    "CallerLeftQueue",
    "ChannelCreated",
    "ChannelEvent",
    "ChannelHungUp",
    "ChannelStateChanged",
    "DialEnded",
    "FullyBooted",
    "Malformed",
    "OriginateResult",
    "QueueEvent",
    "QueueMemberChanged",
    "operator_from_interface",
    "overflow_target",
    "parse_event",
    "split_transcript",
]

_INT = re.compile(r"-?[0-9]{1,15}", re.ASCII)
# Asterisk channel names end in a per-channel sequence number: PJSIP/6001-0000002a.
_CHANNEL_SUFFIX = re.compile(r"-[0-9a-fA-F]{8}(;[12])?$")
# Caller-ID fields of a channel snapshot read "<unknown>" when empty.
_UNKNOWN = "<unknown>"
# Dialplan context of the overflow queue members (``Local/<target>@siaga112-overflow/n``, see
# pbx.render_config): a member interface or channel in it is an overflow destination, not an
# operator.
OVERFLOW_CONTEXT = "siaga112-overflow"
# Their member names, and the ``operator`` recorded when one of them answers, are
# ``OVERFLOW_MEMBER_PREFIX`` + target (the prefix belongs to the call-control protocol).
_OVERFLOW_LOCAL = re.compile(rf"^Local/([^@/;]+)@{OVERFLOW_CONTEXT}(?:[/;-]|$)")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Timed:
    at: datetime
    """When Asterisk raised the event (its Timestamp header), else ``received_at``."""
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEvent(_Timed):
    """An event about one channel (for Queue*/Agent* events: the caller's channel)."""

    uniqueid: str
    linkedid: str
    channel: str
    caller_num: str
    caller_name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelCreated(ChannelEvent):
    """Newchannel."""

    context: str
    exten: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelStateChanged(ChannelEvent):
    """Newstate: ``state`` is Asterisk's numeric ChannelState (6 = Up), ``state_desc`` its name."""

    state: int | None
    state_desc: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelHungUp(ChannelEvent):
    """Hangup: ``cause`` is the Q.850 cause code (16 = normal clearing)."""

    cause: int | None
    cause_txt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueEvent(ChannelEvent):
    queue: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerJoinedQueue(QueueEvent):
    """QueueCallerJoin."""

    position: int | None
    count: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerLeftQueue(QueueEvent):
    """QueueCallerLeave: raised when the caller is answered as well as when it gives up."""

    position: int | None
    count: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerAbandoned(QueueEvent):
    """QueueCallerAbandon: the caller hung up while waiting in the queue."""

    position: int | None
    original_position: int | None
    hold_seconds: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentEvent(QueueEvent):
    """A queue member event; ``uniqueid``/``channel`` are still the caller's."""

    interface: str
    member_name: str
    operator: str
    """Operator extension taken from ``interface`` ('PJSIP/6001' -> '6001'); for an overflow
    destination 'overflow:<target>' ('overflow:+62215550112', 'overflow:9001')."""
    dest_uniqueid: str
    dest_channel: str
    overflow: bool = False
    """The member is an overflow destination (supervisor group, neighbouring centre)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRinging(AgentEvent):
    """AgentCalled: a member's phone is being rung for the caller."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentAnswered(AgentEvent):
    """AgentConnect: the member answered and is bridged to the caller."""

    hold_seconds: int | None
    ring_seconds: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFinished(AgentEvent):
    """AgentComplete: ``reason`` is 'caller', 'agent' or 'transfer' (who ended it)."""

    hold_seconds: int | None
    talk_seconds: int | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentNoAnswer(AgentEvent):
    """AgentRingNoAnswer: the member was rung and did not answer."""

    ring_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMemberChanged(_Timed):
    """QueueMemberAdded, QueueMemberRemoved, QueueMemberStatus or QueueMemberPause: app_queue
    reports the member's whole state with each of them.

    ``change`` is 'added', 'removed', 'status' or 'pause'; ``status`` the numeric device state
    (AST_DEVICE_*: 1 not in use, 2 in use, 5 unavailable, 6 ringing, ...)."""

    change: str
    queue: str
    interface: str
    member_name: str
    operator: str
    """Operator extension taken from the state interface or interface ('PJSIP/6001')."""
    status: int | None
    paused: bool
    pause_reason: str
    in_call: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FullyBooted(_Timed):
    """FullyBooted: sent on login and after Asterisk (re)starts; a cue to resynchronise.

    ``uptime_s``: seconds since this Asterisk process started (None when absent): whatever
    channel siaga112 knew from before that start is gone."""

    status: str
    uptime_s: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OriginateResult(_Timed):
    """OriginateResponse: how an asynchronous Originate ended for its first leg.

    ``success`` once the originated channel answered (and went on to its dialplan); otherwise
    ``reason`` is the last control frame Asterisk saw on it (3 rang out, 5 busy, 1 hung up,
    0 or 8 could not be reached). On failure ``uniqueid`` may be empty: the channel may never
    have existed, hence ``action_id``."""

    action_id: str
    uniqueid: str
    channel: str
    success: bool
    reason: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DialEnded(_Timed):
    """DialEnd: a Dial() (or a queue ringing a member) ended. ``uniqueid``/``channel`` are the
    dialling channel, ``dest_*`` the dialled one, ``dial_status`` its ${DIALSTATUS}. Not a
    :class:`ChannelEvent`: it never changes a call's state."""

    uniqueid: str
    channel: str
    dest_uniqueid: str
    dest_channel: str
    dial_status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Malformed(_Timed):
    """A used event that could not be turned into a call event; ``reason`` says why."""

    event_name: str
    reason: str


CallEvent: TypeAlias = (
    ChannelCreated
    | ChannelStateChanged
    | ChannelHungUp
    | CallerJoinedQueue
    | CallerLeftQueue
    | CallerAbandoned
    | AgentRinging
    | AgentAnswered
    | AgentFinished
    | AgentNoAnswer
)
AmiEvent: TypeAlias = (
    CallEvent | QueueMemberChanged | FullyBooted | OriginateResult | DialEnded | Malformed
)

_Fields = dict[str, str]


def parse_event(msg: Mapping[str, object], *, received_at: datetime) -> AmiEvent | None:
    """Turn one AMI message into a domain event; never raises.

    ``received_at`` should be timezone-aware; a naive value is taken as UTC.
    """
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    fields = _fields(msg)
    name = fields.get("event", "")
    if not name:
        return None
    at = _timestamp(fields.get("timestamp", "")) or received_at
    lowered = name.lower()
    if lowered == "fullybooted":
        return FullyBooted(
            at=at,
            received_at=received_at,
            status=fields.get("status", ""),
            uptime_s=_int(fields.get("uptime")),
        )
    if lowered == "originateresponse":
        return OriginateResult(
            at=at,
            received_at=received_at,
            action_id=fields.get("actionid", ""),
            uniqueid=_caller_id(fields.get("uniqueid", "")).replace("<null>", ""),
            channel=fields.get("channel", ""),
            success=fields.get("response", "").lower() == "success",
            reason=_int(fields.get("reason")),
        )
    if lowered == "dialend":
        if not fields.get("uniqueid"):
            return Malformed(
                at=at, received_at=received_at, event_name=name, reason="no Uniqueid: cannot route"
            )
        return DialEnded(
            at=at,
            received_at=received_at,
            uniqueid=fields.get("uniqueid", ""),
            channel=fields.get("channel", ""),
            dest_uniqueid=fields.get("destuniqueid", ""),
            dest_channel=fields.get("destchannel", ""),
            dial_status=fields.get("dialstatus", "").upper(),
        )
    member_change = _MEMBER_CHANGES.get(lowered)
    if member_change is not None:
        return _member(fields, member_change, at, received_at)
    build = _BUILDERS.get(lowered)
    if build is None:
        return None
    if not fields.get("uniqueid"):
        return Malformed(
            at=at, received_at=received_at, event_name=name, reason="no Uniqueid: cannot route"
        )
    return build(fields, at, received_at)


def operator_from_interface(interface: str) -> str:
    """Operator extension from a queue member interface or channel name.

    'PJSIP/6001' -> '6001'; 'Local/6001@operators/n' -> '6001'; 'PJSIP/6001-0000002a' -> '6001'.
    """
    _tech, slash, rest = interface.strip().partition("/")
    resource = rest if slash else interface.strip()
    resource = _CHANNEL_SUFFIX.sub("", resource)
    return re.split(r"[/@;]", resource, maxsplit=1)[0]


# --- builders --------------------------------------------------------------------------------


def overflow_target(interface: str) -> str | None:
    """The overflow target a member interface or channel name rings, None for an operator.

    'Local/+62215550112@siaga112-overflow/n' -> '+62215550112';
    'Local/9001@siaga112-overflow-0000002a;1' -> '9001'; 'PJSIP/6001' -> None.
    """
    m = _OVERFLOW_LOCAL.match(interface.strip())
    return m.group(1) if m else None


def _fields(msg: Mapping[str, object]) -> _Fields:
    fields: _Fields = {}
    # panoramisk's Message keeps (key, value) pairs in a dict under ``_store``: read straight
    # from it, the same pairs in the same order as items() gives, without a lookup per key.
    store = getattr(msg, "_store", None)
    pairs = store.values() if isinstance(store, dict) else msg.items()
    for key, value in pairs:
        if not isinstance(key, str):
            continue
        if isinstance(value, list):
            value = next((v for v in value if isinstance(v, str)), None)
        if isinstance(value, str):
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _timestamp(raw: str) -> datetime | None:
    try:
        seconds = float(raw)
    except ValueError:
        return None
    # Before 2001 or after 2286 is not a clock this service runs under.
    if not math.isfinite(seconds) or not 1e9 <= seconds < 1e10:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def _int(raw: str | None) -> int | None:
    if raw is None or not _INT.fullmatch(raw):
        return None
    return int(raw)


def _caller_id(raw: str) -> str:
    return "" if raw == _UNKNOWN else raw


class _ChannelKwargs(TypedDict):
    at: datetime
    received_at: datetime
    uniqueid: str
    linkedid: str
    channel: str
    caller_num: str
    caller_name: str


class _AgentKwargs(TypedDict):
    queue: str
    interface: str
    member_name: str
    operator: str
    dest_uniqueid: str
    dest_channel: str
    overflow: bool


def _channel_kwargs(f: _Fields, at: datetime, received_at: datetime) -> _ChannelKwargs:
    return {
        "at": at,
        "received_at": received_at,
        "uniqueid": f.get("uniqueid", ""),
        "linkedid": f.get("linkedid", ""),
        "channel": f.get("channel", ""),
        "caller_num": _caller_id(f.get("calleridnum", "")),
        "caller_name": _caller_id(f.get("calleridname", "")),
    }


def _agent_kwargs(f: _Fields) -> _AgentKwargs:
    interface = f.get("interface", "")
    dest_channel = f.get("destchannel", "")
    target = overflow_target(interface or dest_channel)
    return {
        "queue": f.get("queue", ""),
        "interface": interface,
        "member_name": f.get("membername", ""),
        "operator": (
            operator_from_interface(interface or dest_channel)
            if target is None
            else f"{OVERFLOW_MEMBER_PREFIX}{target}"
        ),
        "dest_uniqueid": f.get("destuniqueid", ""),
        "dest_channel": dest_channel,
        "overflow": target is not None,
    }


def _newchannel(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return ChannelCreated(
        **_channel_kwargs(f, at, rx),
        context=f.get("context", ""),
        exten=f.get("exten", ""),
    )


def _newstate(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return ChannelStateChanged(
        **_channel_kwargs(f, at, rx),
        state=_int(f.get("channelstate")),
        state_desc=f.get("channelstatedesc", ""),
    )


def _hangup(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return ChannelHungUp(
        **_channel_kwargs(f, at, rx),
        cause=_int(f.get("cause")),
        cause_txt=f.get("cause-txt", ""),
    )


def _join(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return CallerJoinedQueue(
        **_channel_kwargs(f, at, rx),
        queue=f.get("queue", ""),
        position=_int(f.get("position")),
        count=_int(f.get("count")),
    )


def _leave(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return CallerLeftQueue(
        **_channel_kwargs(f, at, rx),
        queue=f.get("queue", ""),
        position=_int(f.get("position")),
        count=_int(f.get("count")),
    )


def _abandon(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return CallerAbandoned(
        **_channel_kwargs(f, at, rx),
        queue=f.get("queue", ""),
        position=_int(f.get("position")),
        original_position=_int(f.get("originalposition")),
        hold_seconds=_int(f.get("holdtime")),
    )


def _called(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return AgentRinging(
        **_channel_kwargs(f, at, rx),
        **_agent_kwargs(f),
    )


def _connect(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return AgentAnswered(
        **_channel_kwargs(f, at, rx),
        **_agent_kwargs(f),
        hold_seconds=_int(f.get("holdtime")),
        ring_seconds=_int(f.get("ringtime")),
    )


def _complete(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return AgentFinished(
        **_channel_kwargs(f, at, rx),
        **_agent_kwargs(f),
        hold_seconds=_int(f.get("holdtime")),
        talk_seconds=_int(f.get("talktime")),
        reason=f.get("reason", "").lower(),
    )


def _ring_no_answer(f: _Fields, at: datetime, rx: datetime) -> AmiEvent:
    return AgentNoAnswer(
        **_channel_kwargs(f, at, rx),
        **_agent_kwargs(f),
        ring_ms=_int(f.get("ringtime")),
    )


def _member(f: _Fields, change: str, at: datetime, rx: datetime) -> AmiEvent:
    interface = f.get("interface", "")
    state_interface = f.get("stateinterface", "") or interface
    if not state_interface or not f.get("queue"):
        return Malformed(
            at=at, received_at=rx, event_name=f.get("event", ""), reason="no queue or member"
        )
    return QueueMemberChanged(
        at=at,
        received_at=rx,
        change=change,
        queue=f.get("queue", ""),
        interface=interface,
        member_name=f.get("membername", ""),
        operator=operator_from_interface(state_interface),
        status=_int(f.get("status")),
        paused=f.get("paused", "0") == "1",
        pause_reason=f.get("pausedreason", ""),
        in_call=f.get("incall", "0") == "1",
    )


# Queue member events: no channel, routed to the member (operator).
_MEMBER_CHANGE_EVENTS = {
    "QueueMemberAdded": "added",
    "QueueMemberRemoved": "removed",
    "QueueMemberStatus": "status",
    "QueueMemberPause": "pause",
}

# Events routed to a call; all need the caller channel's Uniqueid.
_CALL_EVENTS: dict[str, Callable[[_Fields, datetime, datetime], AmiEvent]] = {
    "Newchannel": _newchannel,
    "Newstate": _newstate,
    "Hangup": _hangup,
    "QueueCallerJoin": _join,
    "QueueCallerLeave": _leave,
    "QueueCallerAbandon": _abandon,
    "AgentCalled": _called,
    "AgentConnect": _connect,
    "AgentComplete": _complete,
    "AgentRingNoAnswer": _ring_no_answer,
}
# Events with a parser of their own in parse_event (DialEnd is not here: it passes the filter
# only for callback legs, see siaga112.telephony.contract.AMI_SCOPED_EVENTS).
_OWN_PARSER_EVENTS = ("FullyBooted", "OriginateResponse")

# Every event parse_event turns into a domain event (as Asterisk spells them): the manager's
# event filter is rendered from this list, so what passes the filter is what is parsed.
USED_EVENTS: tuple[str, ...] = (*_OWN_PARSER_EVENTS, *_CALL_EVENTS, *_MEMBER_CHANGE_EVENTS)
# The queue member events (QueueMemberChanged): operator states follow the operators' queue
# only (siaga112.telephony.operator_states), so they pass the filter for that queue only.
MEMBER_CHANGE_EVENTS: tuple[str, ...] = tuple(_MEMBER_CHANGE_EVENTS)

# AMI event names are matched case-insensitively.
_BUILDERS = {name.lower(): build for name, build in _CALL_EVENTS.items()}
_MEMBER_CHANGES = {name.lower(): change for name, change in _MEMBER_CHANGE_EVENTS.items()}


def split_transcript(text: str) -> list[dict[str, object]]:
    """Split raw AMI text (``Key: Value`` lines, messages separated by a blank line) into messages.

    For replaying captured streams. A header that repeats becomes a list, as in panoramisk; lines
    without ``": "`` (the ``Asterisk Call Manager/x.y`` banner, comments) are skipped.
    """
    messages: list[dict[str, object]] = []
    current: dict[str, object] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                messages.append(current)
                current = {}
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
            if not sep or line.lstrip().startswith(("#", ";")):
                continue
        previous = current.get(key)
        if previous is None:
            current[key] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            current[key] = [previous, value]
    if current:
        messages.append(current)
    return messages
