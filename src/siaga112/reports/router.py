"""`GET /v1/reports/incidents`: incident counts for the agencies and the city, JSON or CSV."""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from siaga112.api.csv_export import csv_text
from siaga112.api.deps import Reader, SessionDep
from siaga112.api.time_range import TimeRangeDep, jsonable
from siaga112.errors import InvalidRequest
from siaga112.reports.service import MAX_HOURLY_RANGE, IncidentReport, incident_report
from siaga112.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/reports", tags=["reports"], responses=ERROR_RESPONSES)


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
    period: TimeRangeDep,
    format: Annotated[Format, Query()] = Format.JSON,
    by: Annotated[By, Query(description="the grouping a CSV export holds")] = By.CATEGORY,
) -> Response:
    start, end, tz = period.start, period.end, period.tz
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
    return JSONResponse(jsonable(asdict(report)))
