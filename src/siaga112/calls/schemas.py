from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from siaga112.schemas import Output


class CallOut(Output):
    id: uuid.UUID
    uniqueid: str
    linkedid: str
    channel: str | None
    caller_number: str | None
    caller_name: str | None
    caller_e164: str | None
    asserted_number: str | None
    presentation: str | None
    caller_id_available: bool
    dialled_number: str | None
    pani_raw: str | None
    geolocation_raw: str | None
    state: str
    source: str
    queue: str | None
    operator: str | None
    outcome: str | None
    hangup_cause: str | None
    offered_at: datetime
    enqueued_at: datetime | None
    ringing_at: datetime | None
    answered_at: datetime | None
    overflowed_at: datetime | None = Field(
        description="first time an overflow destination (supervisors, a neighbouring centre) "
        "was rung for this caller; null when operators alone handled it"
    )
    transferred_at: datetime | None
    ended_at: datetime | None
    incident_id: int | None


class CallPage(Output):
    items: list[CallOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")
