"""Callbacks through Asterisk: how siaga112 names the operator's leg it originates, and how the
facts reported about that leg become the outcome of a callback attempt. Pure: no I/O, no clock.
(`siaga112.telephony.callback_legs` turns AMI events into these facts.)

A callback is one AMI ``Originate`` of the operator's phone (``PJSIP/<ext>``) into the
``[siaga112-callback]`` context, which dials the caller out through the carrier trunk. The
Originate carries ``ChannelId`` and ``ActionID`` = ``siaga112-cb-<token>``: the operator's leg
then has that Uniqueid in every event, so callback events are recognised by their prefix alone,
in any process and after a restart, without a registry of what is in flight.

Events used (Asterisk 22):

- ``OriginateResponse`` (``ActionID``): ``Response: Success`` once the operator answered (Reason
  4), ``Failure`` when the operator's phone did not answer (Reason 3: rang out; 5: busy; 1: hung
  up/declined; 0 or 8: could not be reached at all).
- ``DialEnd`` (``Uniqueid`` = the operator's leg): ``DialStatus`` of the caller's phone, the
  dialplan's ``${DIALSTATUS}``.
- ``Hangup`` of the operator's leg: the attempt is over.

Each event contributes a :class:`LegFact`; facts merge order-free into :class:`LegFacts`
(first times stay first, a reported status is kept) and :func:`decide` maps them to an
:class:`Outcome`, or None while it is still open.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

__all__ = [
    "CALLBACK_CONTEXT",
    "CALLBACK_ID_PREFIX",
    "LegFact",
    "LegFacts",
    "Outcome",
    "channel_id",
    "decide",
    "merge",
    "token_of",
]

CALLBACK_ID_PREFIX = "siaga112-cb-"
CALLBACK_CONTEXT = "siaga112-callback"


class Outcome(StrEnum):
    REACHED = "reached"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    # The operator's own phone did not answer: the caller was never dialled.
    OPERATOR_UNAVAILABLE = "operator_unavailable"


# ${DIALSTATUS} of the caller's leg. CANCEL: the operator hung up while the caller's phone
# rang, which for the worklist is a caller who did not answer.
_DIAL_OUTCOMES: dict[str, Outcome] = {
    "ANSWER": Outcome.REACHED,
    "NOANSWER": Outcome.NO_ANSWER,
    "CANCEL": Outcome.NO_ANSWER,
    "BUSY": Outcome.BUSY,
}


def channel_id(token: str) -> str:
    """The Uniqueid (and ActionID) of an attempt's operator leg."""
    return CALLBACK_ID_PREFIX + token


def token_of(uniqueid: str) -> str | None:
    """The attempt token of a callback leg's Uniqueid; None for any other channel."""
    if uniqueid.startswith(CALLBACK_ID_PREFIX) and len(uniqueid) > len(CALLBACK_ID_PREFIX):
        return uniqueid[len(CALLBACK_ID_PREFIX) :]
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class LegFacts:
    """What the AMI told about one attempt's operator leg so far."""

    originated: bool | None = None
    """OriginateResponse: True once the operator answered, False when the phone did not."""
    originate_reason: int | None = None
    operator_answered_at: datetime | None = None
    dial_status: str | None = None
    """The caller's ${DIALSTATUS}: ANSWER, NOANSWER, BUSY, CONGESTION, CHANUNAVAIL, CANCEL."""
    dial_ended_at: datetime | None = None
    hungup_at: datetime | None = None
    hangup_cause: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LegFact(LegFacts):
    """One event's contribution, for the attempt ``token``."""

    token: str


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def merge(facts: LegFacts, fact: LegFacts) -> LegFacts:
    """Facts combined order-free: a success beats a failure report (the operator did answer
    once), first times stay first, the first status reported is kept."""
    originated = facts.originated
    reason = facts.originate_reason
    if fact.originated is not None and (originated is None or (fact.originated and not originated)):
        originated, reason = fact.originated, fact.originate_reason
    return replace(
        facts,
        originated=originated,
        originate_reason=reason,
        operator_answered_at=_earliest(facts.operator_answered_at, fact.operator_answered_at),
        dial_status=facts.dial_status or fact.dial_status,
        dial_ended_at=_earliest(facts.dial_ended_at, fact.dial_ended_at),
        hungup_at=_earliest(facts.hungup_at, fact.hungup_at),
        hangup_cause=facts.hangup_cause or fact.hangup_cause,
    )


def decide(facts: LegFacts) -> Outcome | None:
    """The attempt's outcome, or None while it is open.

    The caller's DIALSTATUS decides once reported. Without one: an Originate failure means the
    operator's phone never answered; an answered operator leg that hung up without a DialEnd
    never got the caller ringing (Dial could not start), which is a failure. A Hangup alone
    waits for its OriginateResponse."""
    if facts.dial_status:
        return _DIAL_OUTCOMES.get(facts.dial_status.upper(), Outcome.FAILED)
    if facts.originated is False:
        return Outcome.OPERATOR_UNAVAILABLE
    if facts.originated is True and facts.hungup_at is not None:
        return Outcome.FAILED
    return None
