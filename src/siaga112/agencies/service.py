"""Agencies: list, create, update; every write audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.agencies.models import Agency
from siaga112.agencies.schemas import AgencyCreate, AgencyUpdate
from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor, AgencyRef
from siaga112.errors import Conflict, InvalidRequest, NotFound


def snapshot(agency: Agency) -> dict[str, Any]:
    return {
        "code": agency.code,
        "name": agency.name,
        "kind": agency.kind,
        "phone": agency.phone,
        "active": agency.active,
    }


async def list_agencies(*, session: AsyncSession, active: bool | None = None) -> list[Agency]:
    stmt = select(Agency).order_by(Agency.code)
    if active is not None:
        stmt = stmt.where(Agency.active.is_(active))
    return list((await session.scalars(stmt)).all())


async def agency_ref(*, session: AsyncSession, code: str) -> AgencyRef:
    """The agency with ``code``, for binding an agency key to it."""
    agency_id = await session.scalar(select(Agency.id).where(Agency.code == code))
    if agency_id is None:
        raise NotFound(f"agency {code!r} not found", details=[{"field": "agency"}])
    return AgencyRef(id=agency_id, code=code)


async def get_agency(*, session: AsyncSession, agency_id: int) -> Agency:
    agency = await session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"agency {agency_id} not found")
    return agency


async def create_agency(
    *, session: AsyncSession, data: AgencyCreate, actor: Actor, request_id: str | None
) -> Agency:
    agency = Agency(
        code=data.code, name=data.name, kind=data.kind.value, phone=data.phone, active=data.active
    )
    session.add(agency)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"agency code {data.code!r} already exists", details=[{"field": "body.code"}]
        ) from exc
    await record_audit(
        session=session,
        actor=actor,
        action="agency.create",
        entity_type="agency",
        entity_id=str(agency.id),
        before=None,
        after=snapshot(agency),
        request_id=request_id,
    )
    return agency


async def update_agency(
    *,
    session: AsyncSession,
    agency_id: int,
    data: AgencyUpdate,
    actor: Actor,
    request_id: str | None,
) -> Agency:
    agency = await session.get(Agency, agency_id, with_for_update=True)
    if agency is None:
        raise NotFound(f"agency {agency_id} not found")
    changes = data.model_dump(exclude_unset=True)
    # Only the phone may be cleared; a null for anything else is a mistake, not "no change".
    cleared = [f for f in ("name", "kind", "active") if f in changes and changes[f] is None]
    if cleared:
        raise InvalidRequest(
            f"{', '.join(cleared)} cannot be null",
            details=[{"field": f"body.{f}", "message": "cannot be null"} for f in cleared],
        )
    before = snapshot(agency)
    for field, value in changes.items():
        setattr(agency, field, value.value if hasattr(value, "value") else value)
    after = snapshot(agency)
    if after != before:
        await session.flush()
        await record_audit(
            session=session,
            actor=actor,
            action="agency.update",
            entity_type="agency",
            entity_id=str(agency.id),
            before=before,
            after=after,
            request_id=request_id,
        )
    return agency
