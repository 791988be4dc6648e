from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from siaga112.schemas import Output


class CallerCallOut(Output):
    id: uuid.UUID
    offered_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    state: str
    outcome: str | None
    operator: str | None
    caller_id_available: bool
    incident_id: int | None


class CallerIncidentOut(Output):
    id: int
    created_at: datetime
    status: str
    category: str | None
    classification: str | None
    channel: str


class PastClassification(Output):
    incident_id: int
    created_at: datetime
    classification: str | None


class CallerSummaryOut(Output):
    """The caller's history in brief, inside an incident: the full list is
    `GET /v1/callers/{number}/history`."""

    number: str
    calls_total: int
    incidents_total: int
    classifications: dict[str, int]
    last_seen: datetime | None
    last_classifications: list[PastClassification] = Field(
        description="the number's other incidents, newest first (at most 5)"
    )


class CallerHistoryOut(Output):
    number: str = Field(description="the number in E.164 form, as it was looked up")
    calls_total: int
    incidents_total: int
    classifications: dict[str, int] = Field(
        description="the number's incidents by classification (`unclassified` for none yet)"
    )
    last_seen: datetime | None = Field(description="the newest call or incident of the number")
    calls: list[CallerCallOut] = Field(description="newest first, at most `limit`")
    incidents: list[CallerIncidentOut] = Field(description="newest first, at most `limit`")
