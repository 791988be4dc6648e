"""`GET /v1/reports/incidents`: incident counts for the agencies and the city, JSON or CSV."""

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
from siaga112.reports.service import MAX_HOURLY_RANGE, IncidentReport, incident_report
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/reports", tags=["reports"], responses=ERROR_RESPONSES)

MAX_RANGE = timedelta(days=366)


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class By(StrEnum):
    CATEGORY = "category"
    CLASSIFICATION = "classification"
    AGENCY = "agency"
    KECAMATAN = "kecamatan"
    HOUR = "hour"


def _rows(report: IncidentReport, by: By) -> tuple[list[str], list[dict[str, Any]]]:
    if by is By.AGENCY:
        fields = [
            "agency_code",
            "agency_name",
            "incidents",
            "dispatches",
            "acknowledged",
            "declined",
            "completed",
            "ack_mean_s",
        ]
        return fields, [asdict(a) for a in report.by_agency]
    if by is By.HOUR:
        assert report.by_hour is not None, "checked by the route"
        return ["hour", "incidents"], [
            {"hour": h.hour.isoformat(), "incidents": h.incidents} for h in report.by_hour
        ]
    counts = {
        By.CATEGORY: report.by_category,
        By.CLASSIFICATION: report.by_classification,
        By.KECAMATAN: report.by_kecamatan,
    }[by]
    return [by.value, "incidents"], [{by.value: c.key, "incidents": c.incidents} for c in counts]


def _csv(report: IncidentReport, by: By) -> str:
    fields, lines = _rows(report, by)
    return csv_text(fields, lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


@router.get(
    "/incidents",
    summary="Incidents in a time range by category, classification, agency, kecamatan, hour",
    description=(
        "Incidents created in `[start, end)` (at most 366 days), counted by category, "
        "classification, the agencies they were dispatched to (with acknowledged, declined, "
        "completed and the mean time to acknowledge), kecamatan (district: from the address "
        "`Kec. X` / `Kecamatan X`, else a location's civic address A3, else `unknown`) and "
        "hour (local hours in `tz`, default Asia/Jakarta; every hour of the range, 0 where "
        "there were none, for ranges up to 92 days, else null). `format=csv&by=...` exports one "
        "grouping. Integrators, operators, supervisors and admins may read reports; agency "
        "keys may not."
    ),
    responses={200: {"content": {"text/csv": {}}}},
)
async def incidents_report(
    session: SessionDep,
    _: Reader,
    start: Annotated[datetime | None, Query(description="inclusive; default: 24 h ago")] = None,
    end: Annotated[datetime | None, Query(description="exclusive; default: now")] = None,
    tz: Annotated[str, Query(max_length=64)] = "Asia/Jakarta",
    format: Annotated[Format, Query()] = Format.JSON,
    by: Annotated[By, Query(description="the grouping a CSV export holds")] = By.CATEGORY,
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
    if format is Format.CSV and by is By.HOUR and end - start > MAX_HOURLY_RANGE:
        raise InvalidRequest(
            "hourly rows are given for at most 92 days: ask for a shorter range",
            details=[{"field": "query.by"}, {"field": "query.end"}],
        )
    report = await incident_report(session=session, start=start, end=end, timezone=tz)
    if format is Format.CSV:
        return Response(
            _csv(report, by),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="siaga112-incidents-{by.value}.csv"'
            },
        )
    return JSONResponse(_jsonable(asdict(report)))
