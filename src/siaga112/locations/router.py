"""Caller location API: history of an incident or a call, GeoJSON, operator entry, confirm.

Every read of a location list is audited (``location.read``), as the incident detail is.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse

from siaga112.api.deps import IncidentWriter, Reader, RequestId, SessionDep
from siaga112.locations import service
from siaga112.locations.models import Location
from siaga112.locations.schemas import (
    BestLocationOut,
    BestReason,
    LocationHistory,
    LocationOut,
    OperatorLocationCreate,
)
from siaga112.schemas import ERROR_RESPONSES, ErrorOut

router = APIRouter(tags=["locations"], responses=ERROR_RESPONSES)

IncidentId = Annotated[int, Path(ge=1, le=2**62, description="incident number")]
GEOJSON = "application/geo+json"
_404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "not found"}}
_GEOJSON_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {GEOJSON: {}}, "description": "a FeatureCollection with `?format=geojson`"}
}


class Format(StrEnum):
    JSON = "json"
    GEOJSON = "geojson"


FormatQuery = Annotated[Format, Query(alias="format", description="json or geojson")]


def _window(request: Request) -> timedelta:
    return timedelta(seconds=request.app.state.settings.locations.recent_window_s)


def best_out(locations: Sequence[Location], window: timedelta) -> BestLocationOut | None:
    best = service.best_location(locations, recent_window=window)
    if best is None:
        return None
    return BestLocationOut(
        location=LocationOut.model_validate(best.location),
        reason=BestReason(best.reason),
        newer_unconfirmed=best.newer_unconfirmed,
    )


def feature_collection(
    locations: Sequence[Location], best: BestLocationOut | None
) -> dict[str, Any]:
    """RFC 7946 GeoJSON: one Point per location ([lon, lat]); no coordinates, null geometry."""
    best_id = best.location.id if best else None
    features = []
    for loc in locations:
        geometry = (
            {"type": "Point", "coordinates": [loc.lon, loc.lat]}
            if loc.lat is not None and loc.lon is not None
            else None
        )
        features.append(
            {
                "type": "Feature",
                "id": str(loc.id),
                "geometry": geometry,
                "properties": {
                    "incident_id": loc.incident_id,
                    "call_id": str(loc.call_id) if loc.call_id else None,
                    "source": loc.source,
                    "method": loc.method,
                    "radius_m": loc.radius_m,
                    "confidence": loc.confidence,
                    "address": loc.address,
                    "observed_at": loc.observed_at.isoformat(),
                    "confirmed": loc.confirmed,
                    "confirmed_by": loc.confirmed_by,
                    "best": loc.id == best_id,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def _respond(
    locations: list[Location], window: timedelta, fmt: Format
) -> LocationHistory | JSONResponse:
    best = best_out(locations, window)
    if fmt is Format.GEOJSON:
        return JSONResponse(feature_collection(locations, best), media_type=GEOJSON)
    return LocationHistory(best=best, items=[LocationOut.model_validate(loc) for loc in locations])


@router.get(
    "/incidents/{incident_id}/locations",
    response_model=LocationHistory,
    responses=_404 | _GEOJSON_RESPONSE,
    summary="An incident's location history with provenance and its best location",
)
async def incident_locations(
    incident_id: IncidentId,
    request: Request,
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    fmt: FormatQuery = Format.JSON,
) -> LocationHistory | JSONResponse:
    rows = await service.list_for_incident(
        session=session, incident_id=incident_id, actor=actor, request_id=rid
    )
    await session.commit()
    return _respond(rows, _window(request), fmt)


@router.get(
    "/incidents/{incident_id}/locations.geojson",
    response_class=JSONResponse,
    responses=_404 | _GEOJSON_RESPONSE,
    summary="An incident's locations as a GeoJSON FeatureCollection",
)
async def incident_locations_geojson(
    incident_id: IncidentId, request: Request, session: SessionDep, actor: Reader, rid: RequestId
) -> JSONResponse:
    rows = await service.list_for_incident(
        session=session, incident_id=incident_id, actor=actor, request_id=rid
    )
    await session.commit()
    best = best_out(rows, _window(request))
    return JSONResponse(feature_collection(rows, best), media_type=GEOJSON)


@router.get(
    "/calls/{call_id}/locations",
    response_model=LocationHistory,
    responses=_404 | _GEOJSON_RESPONSE,
    summary="A call's location history with provenance and its best location",
)
async def call_locations(
    call_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    actor: Reader,
    rid: RequestId,
    fmt: FormatQuery = Format.JSON,
) -> LocationHistory | JSONResponse:
    rows = await service.list_for_call(
        session=session, call_id=call_id, actor=actor, request_id=rid
    )
    await session.commit()
    return _respond(rows, _window(request), fmt)


@router.get(
    "/calls/{call_id}/locations.geojson",
    response_class=JSONResponse,
    responses=_404 | _GEOJSON_RESPONSE,
    summary="A call's locations as a GeoJSON FeatureCollection",
)
async def call_locations_geojson(
    call_id: uuid.UUID, request: Request, session: SessionDep, actor: Reader, rid: RequestId
) -> JSONResponse:
    rows = await service.list_for_call(
        session=session, call_id=call_id, actor=actor, request_id=rid
    )
    await session.commit()
    best = best_out(rows, _window(request))
    return JSONResponse(feature_collection(rows, best), media_type=GEOJSON)


@router.post(
    "/incidents/{incident_id}/locations",
    response_model=LocationOut,
    status_code=status.HTTP_201_CREATED,
    responses=_404,
    summary=(
        "Add a location entered by an operator (confirmed when it has coordinates, unless "
        "`confirm` is false)"
    ),
)
async def add_operator_location(
    incident_id: IncidentId,
    data: OperatorLocationCreate,
    session: SessionDep,
    actor: IncidentWriter,
    rid: RequestId,
) -> LocationOut:
    location = await service.add_operator_location(
        session=session,
        incident_id=incident_id,
        lat=data.lat,
        lon=data.lon,
        radius_m=data.radius_m,
        address=data.address,
        call_id=data.call_id,
        confirm=data.confirm,
        note=data.note,
        actor=actor,
        request_id=rid,
    )
    await session.commit()
    await session.refresh(location)
    return LocationOut.model_validate(location)


@router.post(
    "/locations/{location_id}/confirm",
    response_model=LocationOut,
    responses=_404,
    summary="Confirm a location: it becomes the incident's best location; who is recorded",
)
async def confirm_location(
    location_id: uuid.UUID, session: SessionDep, actor: IncidentWriter, rid: RequestId
) -> LocationOut:
    location = await service.confirm_location(
        session=session, location_id=location_id, actor=actor, request_id=rid
    )
    await session.commit()
    await session.refresh(location)
    return LocationOut.model_validate(location)
