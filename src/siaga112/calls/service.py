"""Reading calls. Writes come from the telephony side (AGI, AMI tracker, reconciliation)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.api.pagination import keyset, page
from siaga112.calls.models import Call
from siaga112.errors import NotFound


async def list_calls(
    *,
    session: AsyncSession,
    state: list[str] | None,
    caller: ColumnElement[bool] | None,
    offered_from: datetime | None,
    offered_to: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Call], str | None]:
    stmt = select(Call)
    if state:
        stmt = stmt.where(Call.state.in_(state))
    if caller is not None:
        # `siaga112.callers.matching.calls_of_number`: the number in any stored form.
        stmt = stmt.where(caller)
    if offered_from is not None:
        stmt = stmt.where(Call.offered_at >= offered_from)
    if offered_to is not None:
        stmt = stmt.where(Call.offered_at < offered_to)
    stmt = keyset(
        stmt, at=Call.offered_at, ident=Call.id, id_kind="uuid", cursor=cursor, limit=limit
    )
    rows = (await session.scalars(stmt)).all()
    return page(rows, limit=limit, key=lambda c: (c.offered_at, c.id))


async def get_call(*, session: AsyncSession, call_id: uuid.UUID) -> Call:
    call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call
