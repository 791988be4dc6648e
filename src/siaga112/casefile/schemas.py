"""The case file's shapes: an incident with its calls, locations, caller history and timeline;
a call with its recordings."""

from __future__ import annotations

from pydantic import Field

from siaga112.callers.schemas import CallerSummaryOut
from siaga112.calls.schemas import CallOut
from siaga112.incidents.schemas import IncidentOut, TimelineEntry
from siaga112.locations.schemas import BestLocationOut, LocationOut
from siaga112.recordings.schemas import RecordingOut


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


class CallDetailOut(CallOut):
    recordings: list[RecordingOut] = Field(
        description="metadata; the audio is at download_url (supervisor, admin)"
    )
