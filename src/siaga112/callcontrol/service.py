"""Hang up a live call, or blind-transfer its caller to an agency's number.

Blind transfer (AMI Redirect of the caller channel into ``[siaga112-transfer]``) was chosen over
a conference: one action, no bridge to manage, and the dialplan puts the caller back in the
queue when the agency does not answer, so a failed transfer never drops an emergency call. The
audit row and the incident timeline are written first; the caller commits only when Asterisk
took the action."""

from __future__ import annotations

import re
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.agencies.models import Agency
from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor
from siaga112.callcontrol.protocol import CallControl, CallControlError
from siaga112.calls.models import Call
from siaga112.errors import InvalidRequest, InvalidTransition, NotFound, TelephonyUnavailable
from siaga112.incidents.service import add_timeline_event

TRANSFER_CONTEXT = "siaga112-transfer"
_LIVE_STATES = frozenset({"offered", "queued", "ringing", "answered"})


def dial_digits(phone: str) -> str:
    """An agency's phone as the digits the trunk dials: ``+62 21-555`` -> ``6221555``."""
    return re.sub(r"\D", "", phone)


async def _live_call(session: AsyncSession, call_id: uuid.UUID) -> Call:
    call = await session.get(Call, call_id, with_for_update=True)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    if call.state not in _LIVE_STATES or call.ended_at is not None or not call.channel:
        raise InvalidTransition(f"call {call_id} is not live ({call.state})")
    return call


def _require(control: CallControl | None) -> CallControl:
    if control is None:
        raise TelephonyUnavailable("no AMI connection in this process (serve --api-only?)")
    return control


async def hangup(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    control: CallControl | None,
    actor: Actor,
    request_id: str | None,
) -> Call:
    ctl = _require(control)
    call = await _live_call(session, call_id)
    channel = call.channel or ""
    data = {"call_id": str(call.id), "channel": channel}
    await record_audit(
        session=session,
        actor=actor,
        action="call.hangup",
        entity_type="call",
        entity_id=str(call.id),
        before={"state": call.state},
        after=data,
        request_id=request_id,
    )
    if call.incident_id is not None:
        add_timeline_event(
            session, incident_id=call.incident_id, actor=actor, kind="call_hangup", data=data
        )
    await session.flush()
    try:
        await ctl.hangup(channel=channel, node=call.node)
    except (CallControlError, TimeoutError) as exc:
        raise TelephonyUnavailable(str(exc) or "Asterisk did not answer in time") from exc
    return call


async def transfer(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    agency_id: int,
    control: CallControl | None,
    actor: Actor,
    request_id: str | None,
) -> tuple[Call, str]:
    ctl = _require(control)
    call = await _live_call(session, call_id)
    agency = await session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"agency {agency_id} not found")
    number = dial_digits(agency.phone or "")
    if not agency.active or not number:
        raise InvalidRequest(
            f"agency {agency.code} has no number to transfer to",
            details=[{"field": "body.agency_id"}],
        )
    channel = call.channel or ""
    data = {
        "call_id": str(call.id),
        "channel": channel,
        "agency_id": agency.id,
        "agency": agency.code,
        "number": number,
    }
    await record_audit(
        session=session,
        actor=actor,
        action="call.transfer",
        entity_type="call",
        entity_id=str(call.id),
        before={"state": call.state},
        after=data,
        request_id=request_id,
    )
    if call.incident_id is not None:
        add_timeline_event(
            session, incident_id=call.incident_id, actor=actor, kind="call_transferred", data=data
        )
    await session.flush()
    try:
        await ctl.redirect(channel=channel, context=TRANSFER_CONTEXT, exten=number, node=call.node)
    except (CallControlError, TimeoutError) as exc:
        raise TelephonyUnavailable(str(exc) or "Asterisk did not answer in time") from exc
    return call, number
