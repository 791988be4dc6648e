"""A caller's history by number: calls, incidents, how they were classified, last seen.

What counts as a caller's number, and how it is found in every stored form and column, is
:mod:`siaga112.callers.numbers`. Callers without one (anonymous, restricted, SIM-less, or a
short code such as "112" where the number goes) have no history: asking for one is refused
(``caller_id_unavailable``), never answered with every such call at once. Every read is
audited: who called the centre and why is personal data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import String, column, func, select, true, values
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor
from siaga112.callers.flag_models import NumberFlag
from siaga112.callers.matching import call_keys, calls_page, incident_keys, incidents_page
from siaga112.callers.numbers import (
    fixed_forms,
    is_short_code,
    means_no_number,
    number_forms,
    subscriber_number,
)
from siaga112.calls.models import Call
from siaga112.errors import CallerIdUnavailable, InvalidRequest, NotFound
from siaga112.incidents.lifecycle import Classification
from siaga112.incidents.models import Incident

UNCLASSIFIED = "unclassified"


def history_number(raw: str) -> str:
    """The E.164 form to look up, or a 422: ``caller_id_unavailable`` for the words that mean
    no number and for short codes, ``validation_error`` for what is not a phone number."""
    value = raw.strip()
    if means_no_number(value):
        raise CallerIdUnavailable(
            "the caller's number is not available (anonymous, restricted or no SIM)",
            details=[{"field": "path.number"}],
        )
    if is_short_code(value):
        raise CallerIdUnavailable(
            "a short code (3 to 7 digits) is a service number or a placeholder, not a caller's "
            "number: its calls come from unrelated callers",
            details=[{"field": "path.number", "message": "short code"}],
        )
    number = subscriber_number(value)
    if number is None:
        raise InvalidRequest(
            "not a phone number (+62..., 62... or 0...)", details=[{"field": "path.number"}]
        )
    return number


@dataclass(frozen=True, slots=True)
class CallerHistory:
    number: str
    calls_total: int
    incidents_total: int
    classifications: dict[str, int]
    last_seen: datetime | None
    calls: list[Call]
    incidents: list[Incident]


async def _counts(
    session: AsyncSession, e164: str
) -> tuple[int, datetime | None, int, datetime | None, dict[str, int]]:
    """Calls (count, newest) and incidents (count, newest, by classification) of the number,
    read from the indexes alone: the cost is the index entries of the number's history, never
    its table rows."""
    forms = number_forms(e164)
    calls = call_keys(e164, forms).subquery("calls")
    calls_total, last_call = (
        await session.execute(select(func.count(), func.max(calls.c.offered_at)))
    ).one()
    incidents = incident_keys(e164, forms).subquery("incidents")
    key = func.coalesce(incidents.c.classification, UNCLASSIFIED)
    counts: dict[str, int] = dict.fromkeys([c.value for c in Classification] + [UNCLASSIFIED], 0)
    incidents_total, last_incident = 0, None
    for name, n, newest in (
        await session.execute(
            select(key, func.count(), func.max(incidents.c.created_at)).group_by(key)
        )
    ).all():
        counts[name] = n
        incidents_total += n
        last_incident = newest if last_incident is None else max(last_incident, newest)
    return calls_total, last_call, incidents_total, last_incident, counts


async def caller_history(
    *,
    session: AsyncSession,
    number: str,
    limit: int,
    actor: Actor,
    request_id: str | None,
    call_id: uuid.UUID | None = None,
    incident_id: int | None = None,
    with_calls: bool = True,
) -> CallerHistory:
    """The history of ``number`` (any form; see :func:`history_number`); the read is audited.
    ``call_id`` and ``incident_id`` are only recorded: what the history was asked for. Without
    ``with_calls`` the list of calls is left empty (the totals are there): an incident's
    caller summary, read on every screen pop, shows none."""
    e164 = history_number(number)
    forms = list(dict.fromkeys(number_forms(e164)))
    calls_total, last_call, incidents_total, last_incident, classifications = await _counts(
        session, e164
    )
    calls_stmt = (
        select(Call)
        .where(calls_page(e164, forms)([], limit))
        .order_by(Call.offered_at.desc(), Call.id.desc())
        .limit(limit)
    )
    incidents_stmt = (
        select(Incident)
        .where(incidents_page(e164, forms)([], limit))
        .order_by(Incident.created_at.desc(), Incident.id.desc())
        .limit(limit)
    )
    calls = list((await session.scalars(calls_stmt)).all()) if with_calls else []
    incidents = list((await session.scalars(incidents_stmt)).all())
    seen = [t for t in (last_call, last_incident) if t is not None]
    history = CallerHistory(
        number=e164,
        calls_total=calls_total,
        incidents_total=incidents_total,
        classifications=classifications,
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


async def audit_number_search(
    *,
    session: AsyncSession,
    actor: Actor,
    number: str,
    via: str,
    results: int,
    request_id: str | None,
) -> None:
    """A list filtered by a caller's number is that caller's history: the same audit row as
    GET /v1/callers/{number}/history (written and committed by the listing request)."""
    await record_audit(
        session=session,
        actor=actor,
        action="caller.history.read",
        entity_type="caller",
        entity_id=(usable_number(number) or number)[:64],
        before=None,
        after={"via": via, "results": results},
        request_id=request_id,
    )


def usable_number(raw: str | None) -> str | None:
    """``raw`` in E.164 when it is a caller's full number, else None (never raises)."""
    return subscriber_number(raw)


def number_of_call(call: Call) -> str | None:
    """The number a call's history is looked up by: the network-asserted identity first (the
    From header is the caller's to set), else the caller ID when it was a full number."""
    return subscriber_number(call.asserted_number) or subscriber_number(call.caller_e164)


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
            "this call came without a caller's number "
            "(anonymous, restricted, no SIM or a short code)",
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


# Classifications that count as false calls (EU 112 reporting: prank and silent calls).
FALSE_CALLS = (Classification.PRANK.value, Classification.GHOST.value)


@dataclass(frozen=True, slots=True)
class FlagBrief:
    id: int
    kind: str
    reason: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CallerBrief:
    """What an operator sees of a waiting caller before answering: counts only; the calls and
    incidents themselves are behind the audited history endpoints."""

    calls_total: int
    incidents_total: int
    false_calls: int
    flag: FlagBrief | None


async def caller_briefs(*, session: AsyncSession, numbers: list[str]) -> dict[str, CallerBrief]:
    """The brief history and active flag of each E.164 number in ``numbers``, in one statement
    however many there are (the numbers and their stored forms are a VALUES list; counts and the
    flag are LATERAL subqueries per number, each on its index)."""
    wanted = sorted(set(numbers))
    if not wanted:
        return {}
    nums = values(
        column("e164", String),
        column("f1", String),
        column("f2", String),
        column("f3", String),
        name="numbers",
    ).data([(n, *fixed_forms(n)) for n in wanted])
    forms = [nums.c.f1, nums.c.f2, nums.c.f3]
    # Counted from the indexes alone (siaga112.callers.matching): a waiting caller's history
    # costs its index entries, not its rows.
    call_rows = call_keys(nums.c.e164, forms).subquery("call_keys")
    calls = select(func.count().label("n")).select_from(call_rows).lateral("calls_brief")
    incident_rows = incident_keys(nums.c.e164, forms).subquery("incident_keys")
    incidents = (
        select(
            func.count().label("n"),
            func.count()
            .filter(incident_rows.c.classification.in_(FALSE_CALLS))
            .label("false_calls"),
        )
        .select_from(incident_rows)
        .lateral("incidents_brief")
    )
    flag = (
        select(NumberFlag.id, NumberFlag.kind, NumberFlag.reason, NumberFlag.expires_at)
        .where(
            NumberFlag.number == nums.c.e164,
            NumberFlag.revoked_at.is_(None),
            NumberFlag.expires_at > datetime.now(UTC),
        )
        .order_by(NumberFlag.expires_at.desc(), NumberFlag.id.desc())
        .limit(1)
        .lateral("flag_brief")
    )
    stmt = (
        select(
            nums.c.e164,
            calls.c.n.label("calls"),
            incidents.c.n.label("incidents"),
            incidents.c.false_calls,
            flag.c.id.label("flag_id"),
            flag.c.kind,
            flag.c.reason,
            flag.c.expires_at,
        )
        .select_from(nums)
        .join(calls, true())
        .join(incidents, true())
        .outerjoin(flag, true())
    )
    return {
        r.e164: CallerBrief(
            calls_total=r.calls,
            incidents_total=r.incidents,
            false_calls=r.false_calls,
            flag=FlagBrief(r.flag_id, r.kind, r.reason, r.expires_at)
            if r.flag_id is not None
            else None,
        )
        for r in (await session.execute(stmt)).all()
    }
