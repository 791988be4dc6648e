from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.api.deps import IncidentWriter, Reader, RequestId, SessionDep
from siaga112.auth.service import Actor
from siaga112.callers.matching import incidents_of_number
from siaga112.callers.schemas import CallerSummaryOut, PastClassification
from siaga112.callers.service import audit_number_search, caller_history, usable_number
from siaga112.calls.schemas import CallOut
from siaga112.casefile import service as casefile_service
from siaga112.casefile.schemas import CallBrief, IncidentBriefOut, IncidentDetail
from siaga112.errors import InvalidRequest
from siaga112.incidents import service
from siaga112.incidents.lifecycle import Category, Classification, Status
from siaga112.incidents.models import Incident
from siaga112.incidents.schemas import (
    DuplicateLink,
    IncidentCreate,
    IncidentOut,
    IncidentPage,
    IncidentPatch,
    NoteCreate,
    TimelineEntry,
)
from siaga112.locations.router import best_out
from siaga112.locations.schemas import LocationOut
from siaga112.locations.service import location_facts
from siaga112.schemas import ERROR_RESPONSES, ErrorOut, Timestamp

router = APIRouter(prefix="/incidents", tags=["incidents"], responses=ERROR_RESPONSES)

IncidentId = Annotated[int, Path(ge=1, le=2**62, description="incident number")]
_404: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such incident"}
}
_409: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "invalid status transition or duplicate link"}
}


def _out(incident: Incident, actor: Actor) -> IncidentOut:
    out = IncidentOut.model_validate(incident)
    out.allowed_statuses = service.with_allowed(incident, actor)
    return out


@router.get("", response_model=IncidentPage, summary="List incidents, newest first")
async def list_incidents(
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    status_: Annotated[list[Status] | None, Query(alias="status")] = None,
    category: Annotated[list[Category] | None, Query()] = None,
    classification: Annotated[list[Classification] | None, Query()] = None,
    created_from: Annotated[Timestamp | None, Query(description="inclusive, ISO 8601")] = None,
    created_to: Annotated[Timestamp | None, Query(description="exclusive, ISO 8601")] = None,
    caller_number: Annotated[str | None, Query(max_length=32, pattern=r"^\+?[0-9*#]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> IncidentPage:
    for name, value in (("created_from", created_from), ("created_to", created_to)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest("times need a UTC offset", details=[{"field": f"query.{name}"}])
    filters = service.IncidentFilter(
        status=status_,
        category=category,
        classification=classification,
        created_from=created_from,
        created_to=created_to,
        caller=incidents_of_number(caller_number) if caller_number is not None else None,
    )
    rows, next_cursor = await service.list_incidents(
        session=session, filters=filters, limit=limit, cursor=cursor
    )
    if caller_number is not None:
        await audit_number_search(
            session=session,
            actor=actor,
            number=caller_number,
            via="incidents.list",
            results=len(rows),
            request_id=rid,
        )
        await session.commit()
    return IncidentPage(items=[_out(r, actor) for r in rows], next_cursor=next_cursor)


@router.post(
    "",
    response_model=IncidentOut,
    status_code=status.HTTP_201_CREATED,
    summary="Open an incident reported without a call (walk-in, radio, text)",
)
async def create_incident(
    data: IncidentCreate, session: SessionDep, actor: IncidentWriter, rid: RequestId
) -> IncidentOut:
    incident = await service.create_incident(
        session=session, data=data, actor=actor, request_id=rid
    )
    await session.commit()
    await session.refresh(incident)
    return _out(incident, actor)


@router.get(
    "/{incident_id}",
    response_model=IncidentDetail,
    responses=_404,
    summary="One incident with its calls, locations and timeline",
)
async def get_incident(
    incident_id: IncidentId,
    request: Request,
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    caller_history: Annotated[
        bool,
        Query(
            description="false: `caller_history` is left out (null) and not read, nor audited: "
            "for a client reading the incident again that already shows the caller's history"
        ),
    ] = True,
) -> IncidentDetail:
    d = await casefile_service.get_details(
        session=session, incident_id=incident_id, actor=actor, request_id=rid
    )
    summary = await _caller_summary(session, d.incident, actor, rid) if caller_history else None
    await session.commit()
    base = _out(d.incident, actor)
    return IncidentDetail(
        **base.model_dump(),
        calls=[CallOut.model_validate(c) for c in d.calls],
        locations=[LocationOut.model_validate(loc) for loc in d.locations],
        best_location=best_out(
            d.locations,
            timedelta(seconds=request.app.state.settings.locations.recent_window_s),
        ),
        timeline=[TimelineEntry.model_validate(e) for e in d.timeline],
        caller_history=summary,
    )


@router.get(
    "/{incident_id}/brief",
    response_model=IncidentBriefOut,
    responses=_404,
    summary="One incident with its calls, for a screen pop (no locations, timeline, history)",
    description=(
        "The incident's fields and its calls, read in one statement: what the call-taker's "
        "panel draws the moment the operator's phone answers. Nothing in it tells where the "
        "caller is (no locations, no raw network headers), so the read is not audited; the "
        "full `GET /v1/incidents/{id}` follows for the map, timeline and caller history."
    ),
)
async def get_incident_brief(
    incident_id: IncidentId, session: SessionDep, actor: Reader
) -> IncidentBriefOut:
    b = await casefile_service.get_brief(session=session, incident_id=incident_id)
    return IncidentBriefOut(
        **_out(b.incident, actor).model_dump(),
        calls=[CallBrief.model_validate(c) for c in b.calls],
    )


async def _caller_summary(
    session: AsyncSession, incident: Incident, actor: Actor, rid: str | None
) -> CallerSummaryOut | None:
    number = usable_number(incident.caller_number)
    if number is None:
        return None
    history = await caller_history(
        session=session,
        number=number,
        limit=6,
        actor=actor,
        request_id=rid,
        incident_id=incident.id,
        with_calls=False,
    )
    return CallerSummaryOut(
        number=history.number,
        calls_total=history.calls_total,
        incidents_total=history.incidents_total,
        classifications=history.classifications,
        last_seen=history.last_seen,
        last_classifications=[
            PastClassification(
                incident_id=i.id, created_at=i.created_at, classification=i.classification
            )
            for i in history.incidents
            if i.id != incident.id
        ][:5],
    )


@router.patch(
    "/{incident_id}",
    response_model=IncidentOut,
    responses=_404 | _409,
    summary="Change category, classification, status, priority, address, landmark, summary",
)
async def update_incident(
    incident_id: IncidentId,
    data: IncidentPatch,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
) -> IncidentOut:
    incident = await service.update_incident(
        session=session,
        incident_id=incident_id,
        data=data,
        actor=actor,
        request_id=rid,
        location_facts=location_facts,
    )
    await session.commit()
    await session.refresh(incident)
    return _out(incident, actor)


@router.post(
    "/{incident_id}/notes",
    response_model=TimelineEntry,
    responses=_404,
    status_code=status.HTTP_201_CREATED,
    summary="Add a note to the timeline",
)
async def add_note(
    incident_id: IncidentId,
    data: NoteCreate,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
) -> TimelineEntry:
    event = await service.add_note(
        session=session, incident_id=incident_id, text=data.text, actor=actor, request_id=rid
    )
    await session.commit()
    await session.refresh(event)
    return TimelineEntry.model_validate(event)


@router.get(
    "/{incident_id}/timeline",
    response_model=list[TimelineEntry],
    responses=_404,
    summary="The incident's timeline: who did what, when",
)
async def timeline(
    incident_id: IncidentId, session: SessionDep, actor: Reader, rid: RequestId
) -> list[TimelineEntry]:
    rows = await service.get_timeline(
        session=session, incident_id=incident_id, actor=actor, request_id=rid
    )
    await session.commit()  # the audit of the read
    return [TimelineEntry.model_validate(e) for e in rows]


@router.post(
    "/{incident_id}/duplicate-of",
    response_model=IncidentOut,
    responses=_404 | _409,
    summary="Link this incident as a duplicate of another",
)
async def link_duplicate(
    incident_id: IncidentId,
    data: DuplicateLink,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
) -> IncidentOut:
    incident = await service.link_duplicate(
        session=session,
        incident_id=incident_id,
        duplicate_of=data.duplicate_of,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    await session.refresh(incident)
    return _out(incident, actor)
