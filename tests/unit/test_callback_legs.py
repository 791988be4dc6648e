"""Callback outcomes from the AMI: transcripts captured from the real Asterisk 22 (an Originate
of operator 6001 into [siaga112-callback], the caller's phone behind the carrier trunk answering,
ringing out or busy; operator 6002 not registered, or ringing out) replayed without sockets."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siaga112.callbacks.legs import (
    CALLBACK_ID_PREFIX,
    LegFact,
    LegFacts,
    Outcome,
    channel_id,
    decide,
    merge,
    token_of,
)
from siaga112.callcontrol.protocol import CallControlError
from siaga112.calls.recorder import CallProgress
from siaga112.metrics import Metrics
from siaga112.telephony.ami_call_control import AmiCallControl
from siaga112.telephony.ami_events import (
    AmiEvent,
    ChannelHungUp,
    DialEnded,
    OriginateResult,
    parse_event,
    split_transcript,
)
from siaga112.telephony.callback_legs import fact_of
from siaga112.telephony.tracking import CallTracker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ami"
RECEIVED = datetime(2030, 1, 1, tzinfo=UTC)


def ts(stamp: str) -> datetime:
    return datetime.fromtimestamp(float(stamp), tz=UTC)


def events_of(name: str) -> list[AmiEvent]:
    parsed = (
        parse_event(m, received_at=RECEIVED)
        for m in split_transcript((FIXTURES / name).read_text())
    )
    return [e for e in parsed if e is not None]


def facts_of(name: str) -> list[LegFact]:
    return [f for f in (fact_of(e) for e in events_of(name)) if f is not None]


def fold(facts: list[LegFact]) -> LegFacts:
    state = LegFacts()
    for fact in facts:
        state = merge(state, fact)
    return state


def first_decision(facts: list[LegFact]) -> tuple[int, Outcome] | None:
    """Where, in arrival order, the outcome is first known (as the writer decides it)."""
    state = LegFacts()
    for i, fact in enumerate(facts):
        state = merge(state, fact)
        outcome = decide(state)
        if outcome is not None:
            return i, outcome
    return None


@pytest.mark.parametrize(
    ("name", "outcome", "decided_by"),
    [
        ("callback-reached.txt", Outcome.REACHED, "DialEnd"),
        ("callback-no-answer.txt", Outcome.NO_ANSWER, "DialEnd"),
        ("callback-busy.txt", Outcome.BUSY, "DialEnd"),
        ("callback-operator-no-answer.txt", Outcome.OPERATOR_UNAVAILABLE, "OriginateResponse"),
        ("callback-operator-unregistered.txt", Outcome.OPERATOR_UNAVAILABLE, "OriginateResponse"),
    ],
)
def test_captured_callback_ends_with_its_outcome_decided_by_the_right_event(
    name: str, outcome: Outcome, decided_by: str
) -> None:
    facts = facts_of(name)
    assert len({f.token for f in facts}) == 1, "one attempt per transcript"
    assert decide(fold(facts)) is outcome
    decision = first_decision(facts)
    assert decision is not None
    index, first = decision
    assert first is outcome
    decisive = facts[index]
    if decisive.originated is not None:
        kind = "OriginateResponse"
    else:
        kind = "DialEnd" if decisive.dial_status else "Hangup"
    assert kind == decided_by


def test_reached_capture_keeps_the_times_of_each_leg() -> None:
    facts = fold(facts_of("callback-reached.txt"))
    assert facts.originated is True
    assert facts.originate_reason == 4
    assert facts.operator_answered_at == ts("1796095604.953987")
    assert (facts.dial_status, facts.dial_ended_at) == ("ANSWER", ts("1796095605.462280"))
    assert (facts.hungup_at, facts.hangup_cause) == (ts("1796095607.480920"), "Normal Clearing")


def test_reached_capture_is_open_until_the_caller_answers() -> None:
    facts = facts_of("callback-reached.txt")
    originate_only = fold([f for f in facts if f.originated is not None])
    assert originate_only.originated is True
    assert decide(originate_only) is None


def test_operator_failures_carry_asterisks_reason() -> None:
    unregistered = fold(facts_of("callback-operator-unregistered.txt"))
    rang_out = fold(facts_of("callback-operator-no-answer.txt"))
    assert (unregistered.originated, unregistered.originate_reason) == (False, 0)
    assert unregistered.hungup_at is None  # the channel never existed: no Hangup
    assert (rang_out.originated, rang_out.originate_reason) == (False, 3)
    assert rang_out.hangup_cause == "User alerting, no answer"


def test_callback_events_parse_into_typed_events() -> None:
    events = events_of("callback-busy.txt")
    [originate] = [e for e in events if isinstance(e, OriginateResult)]
    [dial] = [e for e in events if isinstance(e, DialEnded)]
    token = "04a9bb01700f4b0fbe3ba54a5503edab"
    assert originate.action_id == originate.uniqueid == channel_id(token)
    assert (originate.success, originate.reason) == (True, 4)
    assert originate.at == ts("1796095622.982179")
    assert (dial.uniqueid, dial.dial_status) == (channel_id(token), "BUSY")
    assert dial.dest_channel.startswith("PJSIP/carrier-")


@pytest.mark.parametrize(
    "name", ["answered-call.txt", "abandoned-call.txt", "resync-during-answered-call.txt"]
)
def test_112_calls_never_look_like_callbacks(name: str) -> None:
    assert facts_of(name) == []


def test_the_carrier_leg_of_a_callback_is_no_callback_fact() -> None:
    # Its Hangup carries Asterisk's own Uniqueid; only its Linkedid is the callback's.
    carrier_hangups = [
        e
        for e in events_of("callback-reached.txt")
        if isinstance(e, ChannelHungUp) and e.channel.startswith("PJSIP/carrier-")
    ]
    assert carrier_hangups
    assert all(fact_of(e) is None for e in carrier_hangups)


async def test_callback_legs_are_never_written_as_112_calls() -> None:
    written: list[CallProgress] = []

    async def write(updates: list[CallProgress]) -> set[str]:
        written.extend(updates)
        return {u.uniqueid for u in updates}

    async def create(*_: object) -> None:
        raise AssertionError("a callback leg must not open a call")

    tracker = CallTracker(write_progress=write, create_call=create, metrics=Metrics())
    for name in ("callback-reached.txt", "callback-no-answer.txt", "callback-busy.txt"):
        for event in events_of(name):
            tracker.feed(event)
    await tracker.flush()
    assert written == []


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("ANSWER", Outcome.REACHED),
        ("NOANSWER", Outcome.NO_ANSWER),
        ("CANCEL", Outcome.NO_ANSWER),
        ("BUSY", Outcome.BUSY),
        ("CONGESTION", Outcome.FAILED),
        ("CHANUNAVAIL", Outcome.FAILED),
        ("DONTCALL", Outcome.FAILED),
        ("answer", Outcome.REACHED),
    ],
)
def test_dial_status_maps_to_outcome(status: str, outcome: Outcome) -> None:
    assert decide(LegFacts(originated=True, dial_status=status)) is outcome


def test_answered_operator_leg_that_hangs_up_without_dialling_failed() -> None:
    at = RECEIVED
    assert decide(LegFacts(originated=True, hungup_at=at)) is Outcome.FAILED
    assert decide(LegFacts(originated=True)) is None


def test_hangup_alone_waits_for_the_originate_response() -> None:
    assert decide(LegFacts(hungup_at=RECEIVED)) is None
    assert decide(LegFacts(hungup_at=RECEIVED, originated=False)) is Outcome.OPERATOR_UNAVAILABLE


def test_token_round_trip_and_other_uniqueids() -> None:
    assert token_of(channel_id("abc123")) == "abc123"
    assert channel_id("x").startswith(CALLBACK_ID_PREFIX)
    for other in ("1796095604.1", "", CALLBACK_ID_PREFIX, "siaga112-c-abc"):
        assert token_of(other) is None


_times = st.integers(min_value=0, max_value=3600).map(lambda s: RECEIVED + timedelta(seconds=s))


@st.composite
def one_attempt(draw: st.DrawFn) -> list[LegFact]:
    """What one attempt can raise: at most one OriginateResponse, DialEnd and Hangup of its
    operator leg (any of them may be lost)."""
    facts: list[LegFact] = []
    if draw(st.booleans()):
        ok = draw(st.booleans())
        facts.append(
            LegFact(
                token="t",
                originated=ok,
                originate_reason=4 if ok else draw(st.sampled_from([0, 1, 3, 5, 8])),
                operator_answered_at=draw(_times) if ok else None,
            )
        )
    if draw(st.booleans()):
        status = draw(st.sampled_from(["ANSWER", "NOANSWER", "BUSY", "CANCEL", "CONGESTION"]))
        facts.append(LegFact(token="t", dial_status=status, dial_ended_at=draw(_times)))
    if draw(st.booleans()):
        cause = draw(st.sampled_from(["Normal Clearing", "User busy"]))
        facts.append(LegFact(token="t", hungup_at=draw(_times), hangup_cause=cause))
    return facts


@given(st.data())
def test_an_attempts_facts_in_any_order_and_replayed_give_the_same_outcome(
    data: st.DataObject,
) -> None:
    facts = data.draw(one_attempt())
    replayed = data.draw(st.lists(st.sampled_from(facts), max_size=4)) if facts else []
    mixed = data.draw(st.permutations(facts + replayed))
    assert fold(mixed) == fold(facts)
    assert decide(fold(mixed)) == decide(fold(facts))


# --- the Originate action ----------------------------------------------------------------------


class Recorder:
    def __init__(self, reply: Mapping[str, str]) -> None:
        self.reply = reply
        self.sent: list[Mapping[str, str]] = []

    async def send(self, action: Mapping[str, str]) -> Mapping[str, str]:
        self.sent.append(action)
        return self.reply

    async def send_list(self, action: Mapping[str, str]) -> list[Mapping[str, str]]:
        raise AssertionError("not a list action")


OK = {"Response": "Success", "Message": "Originate successfully queued"}


async def test_originate_sends_async_action_with_channel_id_as_action_id() -> None:
    ami = Recorder(OK)
    control = AmiCallControl(send_action=ami.send, send_list=ami.send_list)
    await control.originate(
        endpoint="PJSIP/6001",
        context="siaga112-callback",
        exten="6281234567890",
        caller_id='"Panggil balik" <+6281234567890>',
        ring_s=30,
        channel_id="siaga112-cb-abc",
        variables={"SIAGA112_CALLBACK": "abc", "SIAGA112_CALLBACK_RING_S": "45"},
    )
    [action] = ami.sent
    assert action["Action"] == "Originate"
    assert action["ActionID"] == action["ChannelId"] == "siaga112-cb-abc"
    assert (action["Channel"], action["Context"], action["Exten"], action["Priority"]) == (
        "PJSIP/6001",
        "siaga112-callback",
        "6281234567890",
        "1",
    )
    assert (action["Timeout"], action["Async"]) == ("30000", "true")
    assert action["Variable"] == "SIAGA112_CALLBACK=abc,SIAGA112_CALLBACK_RING_S=45"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exten", "123\r\nAction: Command"),
        ("caller_id", "x\nCommand: core stop now"),
        ("variables", {"A": "1,B=2"}),
        ("variables", {"A=B": "1"}),
    ],
)
async def test_originate_refuses_values_that_would_inject_headers(
    field: str, value: object
) -> None:
    ami = Recorder(OK)
    control = AmiCallControl(send_action=ami.send, send_list=ami.send_list)
    kwargs: dict[str, object] = {
        "endpoint": "PJSIP/6001",
        "context": "siaga112-callback",
        "exten": "6281234567890",
        "caller_id": "112",
        "ring_s": 30,
        "channel_id": "siaga112-cb-abc",
        "variables": {},
    }
    kwargs[field] = value
    with pytest.raises(CallControlError):
        await control.originate(**kwargs)  # type: ignore[arg-type]
    assert ami.sent == []


async def test_originate_refused_by_asterisk_raises() -> None:
    ami = Recorder({"Response": "Error", "Message": "Originate failed"})
    control = AmiCallControl(send_action=ami.send, send_list=ami.send_list)
    with pytest.raises(CallControlError, match="Originate failed"):
        await control.originate(
            endpoint="PJSIP/6001",
            context="siaga112-callback",
            exten="62812",
            caller_id="112",
            ring_s=30,
            channel_id="siaga112-cb-abc",
            variables={},
        )
