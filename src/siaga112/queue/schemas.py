"""API shape of the live queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class LocationSummary(BaseModel):
    source: str
    lat: float | None
    lon: float | None
    radius_m: float | None
    confirmed: bool


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


class LiveQueue(BaseModel):
    # "asterisk": from AMI QueueStatus now; "database": AMI not reachable from this process,
    # calls the tracker last saw queued or ringing (wait measured from enqueued_at).
    source: Literal["asterisk", "database"]
    at: datetime
    waiting: list[WaitingCall]
    longest_wait_s: int
    operators_by_state: dict[str, list[str]]
