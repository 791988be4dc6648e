"""API shapes for caller locations: history with provenance, the best location, GeoJSON."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from siaga112.schemas import Address, Output, ShortText, StrictInput


class LocationOut(Output):
    id: uuid.UUID
    call_id: uuid.UUID | None
    incident_id: int | None
    source: str = Field(description="network_cell, pidf_lo, aml_sms, aml_https or operator")
    method: str | None = Field(description="how the source located the caller (gps, cell-lte..)")
    lat: float | None
    lon: float | None
    radius_m: float | None = Field(description="uncertainty radius in metres")
    confidence: int | None = Field(description="percent, where the source gives one")
    address: str | None
    observed_at: datetime
    confirmed: bool
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None
    raw: dict[str, Any] | None = Field(default=None, description="the payload as received")
    created_at: datetime | None = None


class BestReason(StrEnum):
    CONFIRMED = "confirmed"
    MOST_PRECISE_RECENT = "most_precise_recent"
    LATEST = "latest"


class BestLocationOut(Output):
    location: LocationOut
    reason: BestReason = Field(
        description="confirmed by an operator; else the smallest radius among recent fixes"
    )
    newer_unconfirmed: int = Field(
        description="newer fixes that did not replace the confirmed location (review them)"
    )


class LocationHistory(Output):
    best: BestLocationOut | None
    items: list[LocationOut] = Field(description="oldest first")


class OperatorLocationCreate(StrictInput):
    """A location entered in the centre: coordinates, an address, or both."""

    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    radius_m: float | None = Field(default=None, ge=0, le=1_000_000)
    address: Address | None = None
    call_id: uuid.UUID | None = Field(default=None, description="the call it came from, if any")
    confirm: bool | None = Field(
        default=None,
        description=(
            "make it the incident's confirmed (best) location; by default when it has "
            "coordinates. An address alone is kept but never confirmed: `true` without lat/lon "
            "is refused with 422 `coordinates_required`"
        ),
    )
    note: ShortText | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lat": -6.28211,
                    "lon": 106.97432,
                    "radius_m": 20,
                    "address": "Jl. Raya Jatiasih No. 10, Bekasi",
                    "note": "pelapor menyebut depan masjid",
                }
            ]
        }
    )
