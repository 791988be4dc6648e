"""Reading calls. Writes come from the telephony side (AGI, AMI tracker, reconciliation)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.api.pagination import PagedFilter, after_cursor, keyset, page
from siaga112.calls.models import Call
from siaga112.errors import NotFound


async def list_calls(
    *,
    session: AsyncSession,
    state: list[str] | None,
    caller: PagedFilter | None,
    offered_from: datetime | None,
    offered_to: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Call], str | None]:
    where: list[ColumnElement[bool]] = []
    if state:
        where.append(Call.state.in_(state))
    if offered_from is not None:
        where.append(Call.offered_at >= offered_from)
    if offered_to is not None:
        where.append(Call.offered_at < offered_to)
    if caller is not None:
        # `siaga112.callers.matching.calls_of_number`: the number in any stored form, each
        # form's column read for no more than the page.
        after = after_cursor(at=Call.offered_at, ident=Call.id, id_kind="uuid", cursor=cursor)
        where.append(caller([*where, *([after] if after is not None else [])], limit + 1))
    stmt = keyset(
        select(Call).where(*where),
        at=Call.offered_at,
        ident=Call.id,
        id_kind="uuid",
        cursor=cursor,
        limit=limit,
    )
    rows = (await session.scalars(stmt)).all()
    return page(rows, limit=limit, key=lambda c: (c.offered_at, c.id))


async def get_call(*, session: AsyncSession, call_id: uuid.UUID) -> Call:
    call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call
