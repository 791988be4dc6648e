"""A caller's history by number: calls, incidents, how they were classified, last seen.

A number may have been stored in several forms and columns (``calls.caller_e164``,
``caller_number``, ``asserted_number``, ``incidents.caller_number``: +62812..., 62812...,
0812...); the history looks it up in all of them. Callers without a number (anonymous,
restricted, SIM-less) have no history: asking for one is refused (``caller_id_unavailable``),
never answered with every anonymous call at once. Every read is audited: who called the centre
and why is personal data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor
from siaga112.calls.models import Call
from siaga112.errors import CallerIdUnavailable, InvalidRequest, NotFound
from siaga112.incidents.lifecycle import Classification
from siaga112.incidents.models import Incident
from siaga112.locations.aml_service import number_forms
from siaga112.telephony.agi_request import normalise_indonesian_number

UNCLASSIFIED = "unclassified"

# What callers and carriers put where a number would be (agi_request's list, plus Asterisk's).
NO_NUMBER_WORDS = frozenset(
    {
        "",
        "unknown",
        "anonymous",
        "restricted",
        "private",
        "unavailable",
        "withheld",
        "blocked",
        "<unknown>",
        "none",
        "null",
    }
)


def history_number(raw: str) -> str:
    """The E.164 form to look up, or a 422: ``caller_id_unavailable`` for the words that mean
    no number, ``validation_error`` for what is not a phone number."""
    value = raw.strip()
    if value.lower() in NO_NUMBER_WORDS:
        raise CallerIdUnavailable(
            "the caller's number is not available (anonymous, restricted or no SIM)",
            details=[{"field": "path.number"}],
        )
    number = normalise_indonesian_number(value)
    if number is None:
        raise InvalidRequest(
            "not a phone number (+62..., 62... or 0...)", details=[{"field": "path.number"}]
        )
    return number


def _call_matches(number: str) -> ColumnElement[bool]:
    forms = number_forms(number)
    return or_(
        Call.caller_e164 == number,
        Call.caller_number.in_(forms),
        Call.asserted_number.in_(forms),
    )


def _incident_matches(number: str) -> ColumnElement[bool]:
    # A union of ids rather than an OR, so that each side uses its index and the incidents are
    # then fetched by primary key: no scan of the incidents table however large it grows.
    return Incident.id.in_(
        union(
            select(Incident.id).where(Incident.caller_number.in_(number_forms(number))),
            select(Call.incident_id).where(_call_matches(number), Call.incident_id.is_not(None)),
        )
    )


@dataclass(frozen=True, slots=True)
class CallerHistory:
    number: str
    calls_total: int
    incidents_total: int
    classifications: dict[str, int]
    last_seen: datetime | None
    calls: list[Call]
    incidents: list[Incident]


async def _classifications(session: AsyncSession, where: ColumnElement[bool]) -> dict[str, int]:
    key = func.coalesce(Incident.classification, UNCLASSIFIED)
    counts: dict[str, int] = dict.fromkeys([c.value for c in Classification] + [UNCLASSIFIED], 0)
    for name, n in (
        await session.execute(select(key, func.count()).where(where).group_by(key))
    ).all():
        counts[name] = n
    return counts


async def caller_history(
    *,
    session: AsyncSession,
    number: str,
    limit: int,
    actor: Actor,
    request_id: str | None,
    call_id: uuid.UUID | None = None,
    incident_id: int | None = None,
) -> CallerHistory:
    """The history of ``number`` (any form; see :func:`history_number`); the read is audited.
    ``call_id`` and ``incident_id`` are only recorded: what the history was asked for."""
    e164 = history_number(number)
    calls_where = _call_matches(e164)
    incidents_where = _incident_matches(e164)
    calls_total, last_call = (
        await session.execute(select(func.count(), func.max(Call.offered_at)).where(calls_where))
    ).one()
    incidents_total, last_incident = (
        await session.execute(
            select(func.count(), func.max(Incident.created_at)).where(incidents_where)
        )
    ).one()
    calls_stmt = (
        select(Call).where(calls_where).order_by(Call.offered_at.desc(), Call.id).limit(limit)
    )
    incidents_stmt = (
        select(Incident)
        .where(incidents_where)
        .order_by(Incident.created_at.desc(), Incident.id.desc())
        .limit(limit)
    )
    calls = list((await session.scalars(calls_stmt)).all())
    incidents = list((await session.scalars(incidents_stmt)).all())
    seen = [t for t in (last_call, last_incident) if t is not None]
    history = CallerHistory(
        number=e164,
        calls_total=calls_total,
        incidents_total=incidents_total,
        classifications=await _classifications(session, incidents_where),
        last_seen=max(seen) if seen else None,
        calls=calls,
        incidents=incidents,
    )
    # Who called the centre and about what is personal data: every read is on record.
    await record_audit(
        session=session,
        actor=actor,
        action="caller.history.read",
        entity_type="caller",
        entity_id=e164,
        before=None,
        after={
            "calls": calls_total,
            "incidents": incidents_total,
            "call_id": str(call_id) if call_id else None,
        }
        | ({"incident_id": incident_id} if incident_id is not None else {}),
        request_id=request_id,
    )
    return history


def usable_number(raw: str | None) -> str | None:
    """``raw`` in E.164 when it is a caller's number, else None (never raises)."""
    if raw is None or raw.strip().lower() in NO_NUMBER_WORDS:
        return None
    return normalise_indonesian_number(raw.strip())


def number_of_call(call: Call) -> str | None:
    """The number a call's history is looked up by: the network-asserted identity first (the
    From header is the caller's to set), else the caller ID when it was a usable number."""
    if call.asserted_number:
        asserted = normalise_indonesian_number(call.asserted_number)
        if asserted is not None:
            return asserted
    return call.caller_e164


async def history_for_call(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    limit: int,
    actor: Actor,
    request_id: str | None,
) -> CallerHistory:
    """The history of a (waiting) call's caller; 422 ``caller_id_unavailable`` when the call
    came without a number."""
    call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    number = number_of_call(call)
    if number is None:
        raise CallerIdUnavailable(
            "this call came without a usable number (anonymous, restricted or no SIM)",
            details=[{"field": "path.call_id"}],
        )
    return await caller_history(
        session=session,
        number=number,
        limit=limit,
        actor=actor,
        request_id=request_id,
        call_id=call_id,
    )
