"""`GET /v1/incidents/{id}/duplicate-candidates`: open incidents likely about the same event."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from siaga112.api.deps import Reader, SessionDep
from siaga112.casefile.duplicates import Candidate, duplicate_candidates
from siaga112.config import Settings
from siaga112.incidents.lifecycle import Category, Channel, Classification, Status
from siaga112.schemas import ERROR_RESPONSES, ErrorOut, Output

router = APIRouter(prefix="/incidents", tags=["incidents"], responses=ERROR_RESPONSES)


class CandidateIncident(Output):
    id: int
    status: Status
    category: Category | None
    classification: Classification | None
    priority: int
    channel: Channel
    caller_number: str | None
    address: str | None
    landmark: str | None = None
    kecamatan: str | None
    created_at: datetime


class ReasonOut(BaseModel):
    code: str = Field(description="same_caller, nearby, same_kecamatan or same_category")
    detail: dict[str, Any]


class CandidateOut(BaseModel):
    incident: CandidateIncident
    score: float = Field(description="0..1, higher is likelier the same event")
    minutes_apart: float
    distance_m: float | None = Field(description="between the best locations, when both have one")
    reasons: list[ReasonOut]


class CandidatesOut(BaseModel):
    incident_id: int
    window_min: float
    radius_m: float
    candidates: list[CandidateOut]


def _out(c: Candidate) -> CandidateOut:
    return CandidateOut(
        incident=CandidateIncident.model_validate(c.incident),
        score=c.score,
        minutes_apart=c.minutes_apart,
        distance_m=c.distance_m,
        reasons=[ReasonOut(code=r.code, detail=r.detail) for r in c.reasons],
    )


@router.get(
    "/{incident_id}/duplicate-candidates",
    response_model=CandidatesOut,
    responses={404: {"model": ErrorOut, "description": "no such incident"}},
    summary="Open incidents likely about the same event, ranked, with the reasons",
    description=(
        "Other open incidents created within `window_min` minutes of this one (default "
        "`SIAGA112_DUPLICATES__WINDOW_MIN`, 30) that share its caller number, lie within "
        "`radius_m` metres of its best location (default `SIAGA112_DUPLICATES__RADIUS_M`, 500) "
        "or in the same kecamatan, with categories that agree (equal, or one not set yet). "
        "Ranked by `score`; link one with `POST /v1/incidents/{id}/duplicate-of`."
    ),
)
async def candidates(
    incident_id: Annotated[int, Path(ge=1, le=2**62, description="incident number")],
    request: Request,
    session: SessionDep,
    _: Reader,
    window_min: Annotated[float | None, Query(gt=0, le=24 * 60)] = None,
    radius_m: Annotated[float | None, Query(gt=0, le=50_000)] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> CandidatesOut:
    settings: Settings = request.app.state.settings
    window = window_min if window_min is not None else settings.duplicates.window_min
    radius = radius_m if radius_m is not None else settings.duplicates.radius_m
    found = await duplicate_candidates(
        session=session,
        incident_id=incident_id,
        window=timedelta(minutes=window),
        radius_m=radius,
        max_scanned=settings.duplicates.max_scanned,
        recent_window=timedelta(seconds=settings.locations.recent_window_s),
        limit=limit,
    )
    return CandidatesOut(
        incident_id=incident_id,
        window_min=window,
        radius_m=radius,
        candidates=[_out(c) for c in found],
    )
