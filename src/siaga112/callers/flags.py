"""Flagging prank and nuisance numbers; every write audited. A flag never blocks a call: the
AGI step only routes a flagged number's call to the low-priority queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor
from siaga112.callers.flag_models import NumberFlag
from siaga112.callers.flag_schemas import Evidence, FlagCreate
from siaga112.callers.matching import call_matches, incident_matches
from siaga112.callers.numbers import subscriber_number
from siaga112.calls.models import Call
from siaga112.errors import InvalidRequest, NotFound
from siaga112.incidents.models import Incident


def flaggable_number(raw: str) -> str:
    """The E.164 form of a caller's number, or a 422: short codes and numbers that do not
    normalise are refused, so no flag can ever match anonymous or SIM-less callers."""
    number = subscriber_number(raw)
    if number is None:
        raise InvalidRequest(
            "only a caller's full number can be flagged",
            details=[{"field": "body.number", "message": "not a subscriber number"}],
        )
    return number


def is_active(flag: NumberFlag, now: datetime | None = None) -> bool:
    return flag.revoked_at is None and flag.expires_at > (now or datetime.now(UTC))


def _snapshot(flag: NumberFlag) -> dict[str, Any]:
    return {
        "number": flag.number,
        "kind": flag.kind,
        "reason": flag.reason,
        "expires_at": flag.expires_at.isoformat(),
        "revoked": flag.revoked_at is not None,
    }


async def create_flag(
    *, session: AsyncSession, data: FlagCreate, actor: Actor, request_id: str | None
) -> NumberFlag:
    flag = NumberFlag(
        number=flaggable_number(data.number),
        kind=data.kind.value,
        reason=data.reason,
        expires_at=datetime.now(UTC) + timedelta(hours=data.hours),
        created_by=actor.label,
    )
    session.add(flag)
    await session.flush()
    await record_audit(
        session=session,
        actor=actor,
        action="number_flag.create",
        entity_type="number_flag",
        entity_id=str(flag.id),
        before=None,
        after=_snapshot(flag),
        request_id=request_id,
    )
    return flag


async def revoke_flag(
    *, session: AsyncSession, flag_id: int, actor: Actor, request_id: str | None
) -> NumberFlag:
    flag = await session.get(NumberFlag, flag_id, with_for_update=True)
    if flag is None:
        raise NotFound(f"number flag {flag_id} not found")
    if flag.revoked_at is None:
        before = _snapshot(flag)
        flag.revoked_at = datetime.now(UTC)
        flag.revoked_by = actor.label
        await session.flush()
        await record_audit(
            session=session,
            actor=actor,
            action="number_flag.revoke",
            entity_type="number_flag",
            entity_id=str(flag.id),
            before=before,
            after=_snapshot(flag),
            request_id=request_id,
        )
    return flag


async def get_flag(*, session: AsyncSession, flag_id: int) -> NumberFlag:
    flag = await session.get(NumberFlag, flag_id)
    if flag is None:
        raise NotFound(f"number flag {flag_id} not found")
    return flag


async def list_flags(
    *, session: AsyncSession, active: bool | None, number: str | None, limit: int
) -> list[NumberFlag]:
    stmt = select(NumberFlag).order_by(NumberFlag.created_at.desc(), NumberFlag.id.desc())
    now = datetime.now(UTC)
    if active is True:
        stmt = stmt.where(NumberFlag.revoked_at.is_(None), NumberFlag.expires_at > now)
    elif active is False:
        stmt = stmt.where((NumberFlag.revoked_at.is_not(None)) | (NumberFlag.expires_at <= now))
    if number is not None:
        stmt = stmt.where(NumberFlag.number == flaggable_number(number))
    return list((await session.scalars(stmt.limit(limit))).all())


async def evidence(
    *, session: AsyncSession, flag: NumberFlag, actor: Actor, request_id: str | None
) -> Evidence:
    """Enforcement evidence: how often the number called and how its calls were classified,
    found in every form the number was stored in. The read is audited like any caller history
    read (``caller.history.read``): who called the centre and why is personal data."""
    number = flag.number
    calls = (
        await session.execute(
            select(func.count(), func.min(Call.offered_at), func.max(Call.offered_at)).where(
                call_matches(number)
            )
        )
    ).one()
    rows = (
        await session.execute(
            select(Incident.classification, func.count())
            .where(incident_matches(number))
            .group_by(Incident.classification)
        )
    ).all()
    found = Evidence(
        calls=calls[0],
        first_call_at=calls[1],
        last_call_at=calls[2],
        by_classification={str(k or "unclassified"): int(v) for k, v in rows},
    )
    await record_audit(
        session=session,
        actor=actor,
        action="caller.history.read",
        entity_type="caller",
        entity_id=number,
        before=None,
        after={
            "calls": found.calls,
            "incidents": sum(found.by_classification.values()),
            "flag_id": flag.id,
        },
        request_id=request_id,
    )
    return found
