"""The call tracker's pre-parse filter: the channel events it says to skip are exactly ones
that feeding would have dropped (operators' and Local members' legs), and nothing it needs is
skipped (originating legs, legs of tracked calls, callback legs, queue events)."""

from __future__ import annotations

from datetime import UTC, datetime

from panoramisk.message import Message

from siaga112.callbacks.legs import CALLBACK_ID_PREFIX
from siaga112.calls.recorder import CallFacts, CallProgress
from siaga112.metrics import Metrics
from siaga112.telephony.tracking import CallTracker

CALLER = "1700000000.10"
OPERATOR_LEG = "1700000000.11"


def event(name: str, uniqueid: str, linkedid: str, **more: str) -> dict[str, str]:
    return {
        "Event": name,
        "Uniqueid": uniqueid,
        "Linkedid": linkedid,
        "Channel": f"PJSIP/x-{uniqueid}",
        "CallerIDNum": "+6281234567890",
        "ChannelState": "6",
        "ChannelStateDesc": "Up",
        "Timestamp": f"{datetime.now(UTC).timestamp():.6f}",
        **more,
    }


async def _write(_updates: list[CallProgress]) -> set[str]:
    return set()


async def _create(_facts: CallFacts, _at: datetime) -> None:
    return None


def tracker() -> CallTracker:
    return CallTracker(write_progress=_write, create_call=_create, metrics=Metrics())


def test_operator_leg_channel_events_are_skipped_and_would_have_been_dropped() -> None:
    t = tracker()
    t.feed_raw(event("Newchannel", CALLER, CALLER))
    for name in ("Newchannel", "Newstate", "Hangup"):
        message = event(name, OPERATOR_LEG, CALLER)
        assert t.ignores(message)
        before = dict(t.states)
        t.feed_raw(message)  # what skipping saves: the same states either way
        assert t.states == before
        assert OPERATOR_LEG not in t.states


def test_what_the_tracker_uses_is_never_skipped() -> None:
    t = tracker()
    assert not t.ignores(event("Newchannel", CALLER, CALLER))  # an originating leg
    assert not t.ignores(event("Hangup", "1700000000.12", ""))  # no linkedid: may open a call
    assert not t.ignores(event("QueueCallerJoin", OPERATOR_LEG, CALLER, Queue="q"))
    assert not t.ignores(event("AgentConnect", OPERATOR_LEG, CALLER, Queue="q"))
    callback = f"{CALLBACK_ID_PREFIX}abc"
    assert not t.ignores(event("Hangup", callback, "1700000000.1"))
    # A leg another channel started that entered the queue (a transfer) is tracked from then
    # on: its Hangup ends that call and must not be skipped.
    t.feed_raw(event("QueueCallerJoin", OPERATOR_LEG, CALLER, Queue="q"))
    assert OPERATOR_LEG in t.states
    assert not t.ignores(event("Hangup", OPERATOR_LEG, CALLER))


def test_panoramisk_messages_case_and_odd_values() -> None:
    t = tracker()
    line = "\r\n".join(f"{k}: {v}" for k, v in event("Newstate", OPERATOR_LEG, CALLER).items())
    message = Message.from_line(line)
    assert message is not None
    assert t.ignores(message)
    assert not t.ignores({"event": "Newstate"})
    assert not t.ignores({"Event": "Newstate", "Uniqueid": ["a", "b"], "Linkedid": "c"})
