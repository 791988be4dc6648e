"""API shape of the live queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class LocationSummary(BaseModel):
    source: str
    lat: float | None
    lon: float | None
    radius_m: float | None
    confirmed: bool


class FlagSummary(BaseModel):
    """An active prank/nuisance flag on the caller's number."""

    id: int
    kind: str
    reason: str
    expires_at: datetime


class HistorySummary(BaseModel):
    """The caller's history in counts (this call included); the calls and incidents themselves
    are at `GET /v1/calls/{call_id}/caller-history` (audited)."""

    calls_total: int
    incidents_total: int
    false_calls: int = Field(description="incidents classified prank or ghost (silent)")


class WaitingCall(BaseModel):
    queue: str
    position: int
    caller: str | None
    wait_s: int
    call_id: uuid.UUID | None
    incident_id: int | None
    # Incident priority (1 most urgent); null when siaga112 has no row for the call yet.
    priority: int | None
    location: LocationSummary | None
    # The caller's full number in E.164 (network-asserted identity first); null for anonymous,
    # restricted and SIM-less callers and short codes, who then have no flag and no history.
    number: str | None = None
    flag: FlagSummary | None = None
    history: HistorySummary | None = None


class LiveQueue(BaseModel):
    # "asterisk": from AMI QueueStatus now; "database": AMI not reachable from this process,
    # calls the tracker last saw queued or ringing (wait measured from enqueued_at).
    source: Literal["asterisk", "database"]
    at: datetime
    waiting: list[WaitingCall]
    longest_wait_s: int
    operators_by_state: dict[str, list[str]]
