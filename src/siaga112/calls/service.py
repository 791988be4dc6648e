"""Reading calls. Writes come from the telephony side (AGI, AMI tracker, reconciliation)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.api.pagination import decode_cursor, encode_cursor
from siaga112.calls.models import Call
from siaga112.errors import InvalidRequest, NotFound


async def list_calls(
    *,
    session: AsyncSession,
    state: list[str] | None,
    caller_number: str | None,
    offered_from: datetime | None,
    offered_to: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Call], str | None]:
    stmt = select(Call)
    if state:
        stmt = stmt.where(Call.state.in_(state))
    if caller_number is not None:
        stmt = stmt.where(Call.caller_number == caller_number)
    if offered_from is not None:
        stmt = stmt.where(Call.offered_at >= offered_from)
    if offered_to is not None:
        stmt = stmt.where(Call.offered_at < offered_to)
    if cursor is not None:
        at, ident = decode_cursor(cursor)
        try:
            last_id = uuid.UUID(str(ident))
        except ValueError as exc:
            raise InvalidRequest("invalid cursor", details=[{"field": "query.cursor"}]) from exc
        stmt = stmt.where(tuple_(Call.offered_at, Call.id) < tuple_(at, last_id))
    stmt = stmt.order_by(Call.offered_at.desc(), Call.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].offered_at, str(rows[-1].id))
    return rows, next_cursor


async def get_call(*, session: AsyncSession, call_id: uuid.UUID) -> Call:
    call = await session.get(Call, call_id)
    if call is None:
        raise NotFound(f"call {call_id} not found")
    return call
