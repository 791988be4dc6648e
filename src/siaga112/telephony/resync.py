"""What Asterisk says is happening now, turned into the events the call tracker folds: after
every AMI (re)login siaga112 asks (QueueStatus, CoreShowChannels) instead of waiting for events
it missed while it was away. Pure: lists of AMI messages in, AMI-shaped messages out.

- A caller waiting in a queue (a ``QueueEntry``) becomes a ``QueueCallerJoin``.
- A caller already talking to an operator (a ``CoreShowChannel`` of the carrier context in
  ``Queue`` that shares a bridge with another channel) becomes a ``Newchannel`` (caller ID, the
  channel's age as its offer time) and an ``AgentConnect`` naming the operator. Its answer time
  is the moment of the resync, an upper bound: Asterisk's own record (the CDR column the
  dialplan writes) gives the exact time later, and the earlier time always wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

# The dialplan context the carrier trunk delivers 112 calls into (pbxconf/templates/
# extensions.conf).
CALLER_CONTEXT = "from-carrier"


def _get(message: Mapping[str, object], key: str) -> str:
    value = message.get(key)
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), "")
    return value.strip() if isinstance(value, str) else ""


def _age(duration: str) -> timedelta:
    """``Duration: 01:02:03`` (hours may exceed two digits); zero when it does not parse."""
    parts = duration.split(":")
    if not parts or not all(p.isdigit() for p in parts):
        return timedelta(0)
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return timedelta(seconds=seconds)


def _interface(channel: str) -> str:
    """``PJSIP/6001-00000001`` -> ``PJSIP/6001`` (a channel name ends in its sequence)."""
    base, dash, suffix = channel.rpartition("-")
    return base if dash and base and suffix else channel


@dataclass(frozen=True, slots=True)
class ConnectedCaller:
    uniqueid: str
    linkedid: str
    channel: str
    caller_num: str
    caller_name: str
    queue: str
    offered_at: datetime
    operator_channel: str
    operator_uniqueid: str


def connected_callers(
    entries: Iterable[Mapping[str, object]], *, now: datetime, context: str = CALLER_CONTEXT
) -> list[ConnectedCaller]:
    """Callers of ``context`` bridged to another channel while in Queue(), from the items of a
    CoreShowChannels answer (other messages are ignored)."""
    channels = [e for e in entries if _get(e, "Event") == "CoreShowChannel"]
    by_bridge: dict[str, list[Mapping[str, object]]] = {}
    for entry in channels:
        bridge = _get(entry, "BridgeId")
        if bridge:
            by_bridge.setdefault(bridge, []).append(entry)
    found: list[ConnectedCaller] = []
    for entry in channels:
        uniqueid = _get(entry, "Uniqueid")
        if (
            not uniqueid
            or _get(entry, "Context") != context
            or _get(entry, "Application") != "Queue"
        ):
            continue
        others = [
            o for o in by_bridge.get(_get(entry, "BridgeId"), []) if _get(o, "Uniqueid") != uniqueid
        ]
        if not others:
            continue
        operator = others[0]
        found.append(
            ConnectedCaller(
                uniqueid=uniqueid,
                linkedid=_get(entry, "Linkedid") or uniqueid,
                channel=_get(entry, "Channel"),
                caller_num=_get(entry, "CallerIDNum"),
                caller_name=_get(entry, "CallerIDName"),
                queue=_get(entry, "ApplicationData").split(",", 1)[0].strip(),
                offered_at=now - _age(_get(entry, "Duration")),
                operator_channel=_get(operator, "Channel"),
                operator_uniqueid=_get(operator, "Uniqueid"),
            )
        )
    return found


def connected_caller_events(caller: ConnectedCaller, *, now: datetime) -> list[dict[str, str]]:
    """The messages the tracker would have seen: the caller's channel, then the answer."""
    common = {
        "Channel": caller.channel,
        "Uniqueid": caller.uniqueid,
        "Linkedid": caller.linkedid,
        "CallerIDNum": caller.caller_num,
        "CallerIDName": caller.caller_name,
    }
    return [
        {
            "Event": "Newchannel",
            "Context": CALLER_CONTEXT,
            "Timestamp": f"{caller.offered_at.timestamp():.6f}",
            **common,
        },
        {
            "Event": "AgentConnect",
            "Queue": caller.queue,
            "Interface": _interface(caller.operator_channel),
            "DestChannel": caller.operator_channel,
            "DestUniqueid": caller.operator_uniqueid,
            "Timestamp": f"{now.timestamp():.6f}",
            **common,
        },
    ]


def waiting_caller_event(entry: Mapping[str, object], *, now: datetime) -> dict[str, str] | None:
    """A QueueStatus ``QueueEntry`` as the ``QueueCallerJoin`` it stands for; None otherwise."""
    if _get(entry, "Event") != "QueueEntry" or not _get(entry, "Uniqueid"):
        return None
    wait = _get(entry, "Wait")
    joined = now - timedelta(seconds=int(wait) if wait.isdigit() else 0)
    uniqueid = _get(entry, "Uniqueid")
    return {
        "Event": "QueueCallerJoin",
        "Queue": _get(entry, "Queue"),
        "Position": _get(entry, "Position"),
        "Channel": _get(entry, "Channel"),
        "Uniqueid": uniqueid,
        "Linkedid": _get(entry, "Linkedid") or uniqueid,
        "CallerIDNum": _get(entry, "CallerIDNum"),
        "CallerIDName": _get(entry, "CallerIDName"),
        "Timestamp": f"{joined.timestamp():.6f}",
    }
