"""The case file's shapes: an incident with its calls, locations, caller history and timeline;
a call with its recordings."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from siaga112.callers.schemas import CallerSummaryOut
from siaga112.calls.schemas import CallOut
from siaga112.incidents.schemas import IncidentOut, TimelineEntry
from siaga112.locations.schemas import BestLocationOut, LocationOut
from siaga112.recordings.schemas import RecordingOut
from siaga112.schemas import Output


class IncidentDetail(IncidentOut):
    calls: list[CallOut]
    locations: list[LocationOut]
    best_location: BestLocationOut | None = Field(
        default=None, description="operator-confirmed, else the most precise recent location"
    )
    timeline: list[TimelineEntry]
    caller_history: CallerSummaryOut | None = Field(
        default=None,
        description="the caller number's other calls and incidents in brief (a read of them is "
        "audited); null without a usable number (anonymous, restricted, no SIM)",
    )


class CallBrief(Output):
    """A call as the screen pop draws it: who calls, the number to call back, whether it is
    still live (its Asterisk uniqueid: what the stream's call events name it by). The network's
    raw location headers are read (and audited) with the full case file."""

    id: uuid.UUID
    uniqueid: str
    caller_number: str | None
    caller_name: str | None
    caller_e164: str | None
    asserted_number: str | None
    presentation: str | None
    caller_id_available: bool
    state: str
    queue: str | None
    operator: str | None
    offered_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None


class IncidentBriefOut(IncidentOut):
    """What a screen pop draws first: the incident's fields and its calls, oldest first.
    Locations, timeline and the caller's history come with the full read."""

    calls: list[CallBrief]


class CallDetailOut(CallOut):
    recordings: list[RecordingOut] = Field(
        description="metadata; the audio is at download_url (supervisor, admin)"
    )
