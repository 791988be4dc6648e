"""Opaque keyset cursors: (timestamp, id) of the last row seen."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from siaga112.errors import InvalidRequest
from siaga112.schemas import plausible_time

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1


def encode_cursor(at: datetime, ident: str | int) -> str:
    raw = json.dumps([at.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str | int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_raw, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at = datetime.fromisoformat(at_raw)
        if at.tzinfo is None:
            raise ValueError(cursor)
        plausible_time(at)
        # bool is an int to Python, not to the database; ids are bigint or short text.
        if isinstance(ident, bool) or not isinstance(ident, (str, int)):
            raise ValueError(cursor)
        if isinstance(ident, int) and not BIGINT_MIN <= ident <= BIGINT_MAX:
            raise ValueError(cursor)
        if isinstance(ident, str) and len(ident) > 64:
            raise ValueError(cursor)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(
            "invalid cursor", details=[{"field": "query.cursor", "message": "not a cursor"}]
        ) from exc
    return at, ident
