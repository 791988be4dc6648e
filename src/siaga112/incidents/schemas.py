from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from siaga112.incidents.lifecycle import Category, Channel, Classification, Status
from siaga112.schemas import (
    Address,
    Landmark,
    LongText,
    Output,
    PhoneNumber,
    ShortText,
    StrictInput,
)

Priority = Field(ge=1, le=5, description="1 is the most urgent")


class IncidentCreate(StrictInput):
    """A report that came without a call: walk-in, radio, text."""

    channel: Channel = Field(description="how the report reached the centre; not `call`")
    category: Category | None = None
    classification: Classification | None = None
    priority: int = Field(default=3, ge=1, le=5)
    caller_number: PhoneNumber | None = None
    caller_name: ShortText | None = None
    address: Address | None = None
    landmark: Landmark | None = Field(
        default=None, description="what the caller says is near: a mosque, a market, a school"
    )
    summary: LongText | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "channel": "walk_in",
                    "category": "pohon_tumbang",
                    "priority": 2,
                    "caller_name": "Pak Rudi",
                    "address": "Jl. Blandongan, Kota Pasuruan",
                    "landmark": "depan Pasar Besar",
                    "summary": "Pohon tumbang menutup jalan, tidak ada korban",
                }
            ]
        }
    )


class IncidentPatch(StrictInput):
    category: Category | None = None
    classification: Classification | None = None
    status: Status | None = None
    priority: int | None = Field(default=None, ge=1, le=5)
    address: Address | None = None
    landmark: Landmark | None = Field(
        default=None, description="what the caller says is near: a mosque, a market, a school"
    )
    summary: LongText | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "category": "kebakaran",
                    "classification": "emergency",
                    "status": "in_progress",
                    "priority": 1,
                    "address": "Jl. Raya Jatiasih No. 10, Bekasi",
                    "landmark": "seberang Masjid Al-Ikhlas",
                    "summary": "Rumah terbakar, dua orang terjebak di lantai dua",
                }
            ]
        }
    )


class NoteCreate(StrictInput):
    text: LongText

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "Pelapor menelepon ulang, api sudah membesar"}]}
    )


class DuplicateLink(StrictInput):
    duplicate_of: int = Field(ge=1, description="the incident this one duplicates")

    model_config = ConfigDict(json_schema_extra={"examples": [{"duplicate_of": 41}]})


class IncidentOut(Output):
    id: int
    status: Status
    category: Category | None
    classification: Classification | None
    priority: int
    channel: Channel
    caller_number: str | None
    caller_name: str | None
    address: str | None
    landmark: str | None = Field(default=None, description="what the caller says is near")
    kecamatan: str | None = Field(
        default=None, description="district, from the address or a civic location (reports)"
    )
    summary: str | None
    duplicate_of_id: int | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    allowed_statuses: list[Status] = Field(
        default_factory=list, description="statuses an operator may move this incident to"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "status": "in_progress",
                    "category": "kebakaran",
                    "classification": "emergency",
                    "priority": 1,
                    "channel": "call",
                    "caller_number": "+6281234567890",
                    "caller_name": None,
                    "address": "Jl. Raya Jatiasih No. 10, Kec. Jatiasih, Kota Bekasi",
                    "landmark": "seberang Masjid Al-Ikhlas",
                    "kecamatan": "Jatiasih",
                    "summary": "Rumah terbakar, dua orang terjebak di lantai dua",
                    "duplicate_of_id": None,
                    "created_by": "system:agi",
                    "created_at": "2026-11-23T08:31:02.114Z",
                    "updated_at": "2026-11-23T08:32:40.020Z",
                    "closed_at": None,
                    "allowed_statuses": ["dispatched", "resolved", "closed"],
                }
            ]
        }
    )


class TimelineEntry(Output):
    id: int
    at: datetime
    actor: str = Field(
        description="who: `key:<key name>` for an API key, `system:<part>` for siaga112"
    )
    kind: str = Field(description="what: created, updated, status_changed, note, call_answered …")
    data: dict[str, Any]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 7,
                    "at": "2026-11-23T08:32:40.020Z",
                    "actor": "key:Operator shift A",
                    "kind": "status_changed",
                    "data": {"status": {"from": "new", "to": "in_progress"}},
                }
            ]
        }
    )


class IncidentPage(Output):
    items: list[IncidentOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")
