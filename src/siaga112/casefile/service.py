"""Reading an incident's case file: the incident, its calls, its caller locations and its
timeline, in one audited read; and the brief a screen pop draws first (the incident and its
calls, in one statement, nothing about where the caller is, so nothing to audit or commit)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor
from siaga112.calls.models import Call
from siaga112.errors import NotFound
from siaga112.incidents import service as incidents_service
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.locations.models import Location


@dataclass(frozen=True, slots=True)
class IncidentDetails:
    incident: Incident
    calls: list[Call]
    locations: list[Location]
    timeline: list[IncidentEvent]


@dataclass(frozen=True, slots=True)
class IncidentBrief:
    incident: Incident
    calls: list[Call]


async def get_brief(*, session: AsyncSession, incident_id: int) -> IncidentBrief:
    """The incident and its calls (oldest first) in one statement. Its caller locations,
    timeline and the caller's history are left to the full read (:func:`get_details`): the
    brief is what the panel needs the moment the operator's phone answers."""
    rows = (
        await session.execute(
            select(Incident, Call)
            .outerjoin(Call, Call.incident_id == Incident.id)
            .where(Incident.id == incident_id)
            .order_by(Call.offered_at)
        )
    ).all()
    if not rows:
        raise NotFound(f"incident {incident_id} not found")
    return IncidentBrief(rows[0][0], [call for _, call in rows if call is not None])


async def get_details(
    *, session: AsyncSession, incident_id: int, actor: Actor, request_id: str | None
) -> IncidentDetails:
    incident = await incidents_service.get_incident(session=session, incident_id=incident_id)
    calls = (
        await session.scalars(
            select(Call).where(Call.incident_id == incident_id).order_by(Call.offered_at)
        )
    ).all()
    locations = (
        await session.scalars(
            select(Location)
            .where(Location.incident_id == incident_id)
            .order_by(Location.observed_at)
        )
    ).all()
    timeline = await incidents_service.timeline_rows(session=session, incident_id=incident_id)
    # Where a caller is, is personal data: every read of it is on record, also an empty one
    # (the timeline in the detail carries the location events too).
    await record_audit(
        session=session,
        actor=actor,
        action="location.read",
        entity_type="incident",
        entity_id=str(incident_id),
        before=None,
        after={
            "locations": len(locations),
            "location_events": incidents_service.location_event_count(timeline),
        },
        request_id=request_id,
    )
    return IncidentDetails(incident, list(calls), list(locations), list(timeline))
