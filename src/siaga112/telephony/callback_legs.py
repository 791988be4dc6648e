"""AMI events about a callback's operator leg (OriginateResponse, DialEnd, Hangup) turned into
the facts `siaga112.callbacks.legs` decides outcomes from."""

from __future__ import annotations

from siaga112.callbacks.legs import LegFact, token_of
from siaga112.telephony.ami_events import AmiEvent, ChannelHungUp, DialEnded, OriginateResult

__all__ = ["fact_of"]


def fact_of(event: AmiEvent) -> LegFact | None:
    """The callback fact an event carries; None for events about anything else."""
    if isinstance(event, OriginateResult):
        token = token_of(event.action_id) or token_of(event.uniqueid)
        if token is None:
            return None
        return LegFact(
            token=token,
            originated=event.success,
            originate_reason=event.reason,
            operator_answered_at=event.at if event.success else None,
        )
    if isinstance(event, DialEnded):
        token = token_of(event.uniqueid)
        if token is None or not event.dial_status:
            return None
        return LegFact(token=token, dial_status=event.dial_status, dial_ended_at=event.at)
    if isinstance(event, ChannelHungUp):
        token = token_of(event.uniqueid)
        if token is None:
            return None
        cause = event.cause_txt or (str(event.cause) if event.cause is not None else None)
        return LegFact(token=token, hungup_at=event.at, hangup_cause=cause)
    return None
