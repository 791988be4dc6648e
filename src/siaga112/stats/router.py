from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from siaga112.api.csv_export import csv_text
from siaga112.api.deps import Reader, SessionDep
from siaga112.errors import InvalidRequest
from siaga112.schemas import ERROR_RESPONSES
from siaga112.stats.service import Figures, ServiceLevels, service_levels

router = APIRouter(prefix="/stats", tags=["stats"], responses=ERROR_RESPONSES)

MAX_RANGE = timedelta(days=366)


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class CsvRows(StrEnum):
    HOUR = "hour"
    OPERATOR = "operator"


def _flat(figures: Figures) -> dict[str, Any]:
    row = asdict(figures)
    within = row.pop("answered_within")
    row.update({f"answered_within_{k}": v for k, v in within.items()})
    return row


def _csv(levels: ServiceLevels, rows: CsvRows) -> str:
    if rows is CsvRows.HOUR:
        lines = [{"hour": h.hour.isoformat(), **_flat(h.figures)} for h in levels.by_hour]
    else:
        lines = [asdict(o) for o in levels.by_operator]
    return csv_text(list(lines[0]), lines) if lines else ""


@router.get(
    "",
    summary="Service levels for a time range: offered, answered, abandoned, answer times",
    description=(
        "Answer time runs from the caller's INVITE reaching Asterisk to an operator's answer. "
        "`answered_within` is the share of all calls offered answered within 10, 15 and 20 s "
        "(NENA-STA-020.1: 90% within 15 s, 95% within 20 s; NFPA 1225: 90% within 10 s). "
        "`false_call_share`: prank and ghost/silent calls among classified incidents (EU 112 "
        "reporting). Hours are in `tz`. `format=csv` exports the hourly rows "
        "(`rows=hour`) or the operators (`rows=operator`)."
    ),
    responses={200: {"content": {"text/csv": {}}}},
)
async def stats(
    session: SessionDep,
    _: Reader,
    start: Annotated[datetime | None, Query(description="inclusive; default: 24 h ago")] = None,
    end: Annotated[datetime | None, Query(description="exclusive; default: now")] = None,
    tz: Annotated[str, Query(max_length=64)] = "Asia/Jakarta",
    format: Annotated[Format, Query()] = Format.JSON,
    rows: Annotated[CsvRows, Query()] = CsvRows.HOUR,
) -> Response:
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
    levels = await service_levels(session=session, start=start, end=end, timezone=tz)
    if format is Format.CSV:
        return Response(
            _csv(levels, rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="siaga112-{rows.value}.csv"'},
        )
    body = asdict(levels)
    return JSONResponse(_jsonable(body))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
