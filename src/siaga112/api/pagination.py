"""Opaque keyset cursors: (timestamp, id) of the last row seen."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from siaga112.errors import InvalidRequest


def encode_cursor(at: datetime, ident: str | int) -> str:
    raw = json.dumps([at.isoformat(), ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str | int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_raw, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at = datetime.fromisoformat(at_raw)
        if not isinstance(ident, (str, int)) or at.tzinfo is None:
            raise ValueError(cursor)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            "invalid cursor", details=[{"field": "query.cursor", "message": "not a cursor"}]
        ) from exc
    return at, ident
