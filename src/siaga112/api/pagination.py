"""Keyset pagination, newest first, with opaque cursors: (timestamp, id) of the last row seen.

One way for every list: :func:`keyset` orders a statement by (timestamp, id) descending, starts
it after the cursor and asks for one row more than the page; :func:`page` cuts that extra row off
and makes the next cursor from the last row kept.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import ColumnElement, Select, SQLColumnExpression, tuple_

from siaga112.errors import InvalidRequest
from siaga112.schemas import plausible_time

Row = TypeVar("Row")
Stmt = TypeVar("Stmt", bound="Select[*tuple[Any, ...]]")
IdKind = Literal["int", "uuid"]

# A filter that reads in parts (one per index, e.g. each column a caller's number may be stored
# in): given the page's other conditions (its cursor among them) and how many rows the page
# reads, the condition that keeps the page's rows among the parts' newest. Each part then reads
# no more than a page, however many rows match in all.
PagedFilter = Callable[[Sequence["ColumnElement[bool]"], int], "ColumnElement[bool]"]

# Ids are PostgreSQL bigints or UUIDs: a larger number is no row's and must not reach the database.
BIGINT_MAX = 2**63 - 1


def _invalid() -> InvalidRequest:
    return InvalidRequest(
        "invalid cursor", details=[{"field": "query.cursor", "message": "not a cursor"}]
    )


def encode_cursor(at: datetime, ident: str | int) -> str:
    raw = json.dumps([at.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, id_kind: IdKind) -> tuple[datetime, int | uuid.UUID]:
    """The (timestamp, id) a cursor holds; anything else is an ``invalid_request``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_raw, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at = datetime.fromisoformat(at_raw)
        if at.tzinfo is None:
            raise ValueError(cursor)
        plausible_time(at)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _invalid() from exc
    if id_kind == "int":
        # bool is an int to Python, never an id.
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= BIGINT_MAX:
            raise _invalid()
        return at, ident
    if not isinstance(ident, str):
        raise _invalid()
    try:
        return at, uuid.UUID(ident)
    except ValueError as exc:
        raise _invalid() from exc


def keyset(
    stmt: Stmt,
    *,
    at: SQLColumnExpression[Any],
    ident: SQLColumnExpression[Any],
    id_kind: IdKind,
    cursor: str | None,
    limit: int,
) -> Stmt:
    """``stmt`` newest first by (``at``, ``ident``), after ``cursor``, one row past ``limit``."""
    after = after_cursor(at=at, ident=ident, id_kind=id_kind, cursor=cursor)
    if after is not None:
        stmt = stmt.where(after)
    return stmt.order_by(at.desc(), ident.desc()).limit(limit + 1)


def after_cursor(
    *,
    at: SQLColumnExpression[Any],
    ident: SQLColumnExpression[Any],
    id_kind: IdKind,
    cursor: str | None,
) -> ColumnElement[bool] | None:
    """The rows past ``cursor`` in :func:`keyset` order (None without a cursor): for statements
    that read a page in parts, each part starting where the page starts."""
    if cursor is None:
        return None
    last_at, last_id = decode_cursor(cursor, id_kind=id_kind)
    return tuple_(at, ident) < tuple_(last_at, last_id)


def page(
    rows: Sequence[Row], *, limit: int, key: Callable[[Row], tuple[datetime, int | uuid.UUID]]
) -> tuple[list[Row], str | None]:
    """The page of a :func:`keyset` statement's rows, and the cursor of the next (None at the
    end)."""
    kept = list(rows[:limit])
    if len(rows) <= limit:
        return kept, None
    at, ident = key(kept[-1])
    return kept, encode_cursor(at, ident if isinstance(ident, int) else str(ident))
