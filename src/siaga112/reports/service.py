"""Incident counts for a time range, grouped in PostgreSQL.

An incident belongs to the range by its ``created_at`` (start inclusive, end exclusive). Every
incident is counted once per grouping, duplicates included (``by_classification`` shows how many
were duplicates). ``by_agency`` counts the incidents of the range handed to each agency and what
became of those dispatches; an incident sent to two agencies counts once for each. Empty values
get a name of their own so that the rows add up to the total: ``uncategorised``,
``unclassified``, ``unknown`` (kecamatan). ``by_hour`` lists every local hour of the range, those
without incidents with 0, for ranges up to :data:`MAX_HOURLY_RANGE` (longer: None, as a year of
hours is no longer a shift report).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from siaga112.agencies.models import Agency
from siaga112.dispatch.models import Dispatch
from siaga112.incidents.models import Incident

UNCATEGORISED = "uncategorised"
UNCLASSIFIED = "unclassified"
UNKNOWN_KECAMATAN = "unknown"
# At most 92 days (a quarter) of hourly rows: 2,208 of them.
MAX_HOURLY_RANGE = timedelta(days=92)


def _in_range(start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(Incident.created_at >= start, Incident.created_at < end)


@dataclass(frozen=True, slots=True)
class Count:
    key: str
    incidents: int


@dataclass(frozen=True, slots=True)
class HourCount:
    hour: datetime
    incidents: int


@dataclass(frozen=True, slots=True)
class AgencyCount:
    agency_code: str
    agency_name: str
    incidents: int
    dispatches: int
    acknowledged: int
    declined: int
    completed: int
    ack_mean_s: float | None


@dataclass(frozen=True, slots=True)
class IncidentReport:
    start: datetime
    end: datetime
    timezone: str
    total: int
    by_category: list[Count]
    by_classification: list[Count]
    by_agency: list[AgencyCount]
    by_kecamatan: list[Count]
    by_hour: list[HourCount] | None


async def _counts(
    session: AsyncSession, column: InstrumentedAttribute[str | None], empty: str, where: Any
) -> list[Count]:
    key = func.coalesce(column, empty).label("key")
    n = func.count().label("n")
    rows = (
        await session.execute(select(key, n).where(where).group_by(key).order_by(n.desc(), key))
    ).all()
    return [Count(key=r.key, incidents=r.n) for r in rows]


def local_hours(start: datetime, end: datetime, zone: ZoneInfo) -> list[datetime]:
    """The local wall-clock hours (in ``zone``) that overlap ``[start, end)``, in order. Steps
    are one real hour, so a daylight-saving change gives no missing or doubled hour and zones
    with half-hour offsets get their own hour boundaries."""
    first = start.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    hours: list[datetime] = []
    at = first.astimezone(UTC)
    while at < end:
        hours.append(at.astimezone(zone))
        at += timedelta(hours=1)
    return hours


def _fill_hours(
    counts: dict[datetime, int], start: datetime, end: datetime, zone: ZoneInfo
) -> list[HourCount]:
    # Aware datetimes compare as instants, whatever zone each was expressed in.
    return [HourCount(hour=h, incidents=counts.get(h, 0)) for h in local_hours(start, end, zone)]


async def incident_report(
    *, session: AsyncSession, start: datetime, end: datetime, timezone: str
) -> IncidentReport:
    where = _in_range(start, end)
    total = await session.scalar(select(func.count()).select_from(Incident).where(where)) or 0
    agency_incidents = func.count(distinct(Dispatch.incident_id)).label("incidents")
    agencies = (
        await session.execute(
            select(
                Agency.code,
                Agency.name,
                agency_incidents,
                func.count().label("dispatches"),
                func.count(Dispatch.acknowledged_at).label("acknowledged"),
                func.count().filter(Dispatch.status == "declined").label("declined"),
                func.count().filter(Dispatch.status == "completed").label("completed"),
                func.avg(
                    func.extract("epoch", Dispatch.acknowledged_at - Dispatch.created_at)
                ).label("ack_mean_s"),
            )
            .select_from(Dispatch)
            .join(Incident, Incident.id == Dispatch.incident_id)
            .join(Agency, Agency.id == Dispatch.agency_id)
            .where(where)
            .group_by(Agency.code, Agency.name)
            .order_by(agency_incidents.desc(), Agency.code)
        )
    ).all()
    zone = ZoneInfo(timezone)
    by_hour: list[HourCount] | None = None
    if end - start <= MAX_HOURLY_RANGE:
        hour = func.date_trunc("hour", Incident.created_at, timezone).label("hour")
        hours = (
            await session.execute(select(hour, func.count().label("n")).where(where).group_by(hour))
        ).all()
        # Local wall-clock hours with their offset, as the centre's shift reports read them.
        by_hour = _fill_hours({r.hour: r.n for r in hours}, start, end, zone)
    return IncidentReport(
        start=start,
        end=end,
        timezone=timezone,
        total=total,
        by_category=await _counts(session, Incident.category, UNCATEGORISED, where),
        by_classification=await _counts(session, Incident.classification, UNCLASSIFIED, where),
        by_agency=[
            AgencyCount(
                agency_code=r.code,
                agency_name=r.name,
                incidents=r.incidents,
                dispatches=r.dispatches,
                acknowledged=r.acknowledged,
                declined=r.declined,
                completed=r.completed,
                ack_mean_s=None if r.ack_mean_s is None else round(float(r.ack_mean_s), 3),
            )
            for r in agencies
        ],
        by_kecamatan=await _counts(session, Incident.kecamatan, UNKNOWN_KECAMATAN, where),
        by_hour=by_hour,
    )
