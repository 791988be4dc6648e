"""The time range of a report (`start`, `end`, `tz` query parameters) checked in one place,
and report dataclasses turned into JSON."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Query

from siaga112.errors import InvalidRequest
from siaga112.schemas import Timestamp

MAX_RANGE = timedelta(days=366)


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime
    tz: str


def time_range(
    start: Annotated[Timestamp | None, Query(description="inclusive; default: 24 h ago")] = None,
    end: Annotated[Timestamp | None, Query(description="exclusive; default: now")] = None,
    tz: Annotated[str, Query(max_length=64, description="for hours and days")] = "Asia/Jakarta",
) -> TimeRange:
    end = end or datetime.now(UTC)
    start = start or end - timedelta(hours=24)
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise InvalidRequest("times need a UTC offset", details=[{"field": f"query.{name}"}])
    if not start < end or end - start > MAX_RANGE:
        raise InvalidRequest(
            "start must be before end, at most 366 days apart",
            details=[{"field": "query.start"}, {"field": "query.end"}],
        )
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRequest("unknown time zone", details=[{"field": "query.tz"}]) from exc
    return TimeRange(start=start, end=end, tz=tz)


TimeRangeDep = Annotated[TimeRange, Depends(time_range)]


def jsonable(value: Any) -> Any:
    """A report's ``asdict`` with its datetimes as ISO 8601 text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value
