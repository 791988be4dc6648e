from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from siaga112.api.csv_export import csv_text
from siaga112.api.deps import Reader, SessionDep
from siaga112.api.time_range import TimeRangeDep, jsonable
from siaga112.schemas import ERROR_RESPONSES
from siaga112.stats.service import Figures, ServiceLevels, service_levels

router = APIRouter(prefix="/stats", tags=["stats"], responses=ERROR_RESPONSES)


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
    period: TimeRangeDep,
    format: Annotated[Format, Query()] = Format.JSON,
    rows: Annotated[CsvRows, Query()] = CsvRows.HOUR,
) -> Response:
    start, end, tz = period.start, period.end, period.tz
    levels = await service_levels(session=session, start=start, end=end, timezone=tz)
    if format is Format.CSV:
        return Response(
            _csv(levels, rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="siaga112-{rows.value}.csv"'},
        )
    body = asdict(levels)
    return JSONResponse(jsonable(body))
