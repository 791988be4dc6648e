"""API shapes for dispatches, default agencies, agency delivery settings and the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, ConfigDict, Field, StringConstraints, UrlConstraints

from siaga112.dispatch.lifecycle import DispatchStatus
from siaga112.incidents.lifecycle import Category, Classification, Status
from siaga112.schemas import Code, LongText, Output, ShortText, StrictInput

WebhookUrl = Annotated[
    AnyHttpUrl, UrlConstraints(max_length=500, allowed_schemes=["http", "https"])
]
WebhookSecret = Annotated[
    str, StringConstraints(min_length=32, max_length=200, pattern=r"^[\x21-\x7e]+$")
]


class DispatchCreate(StrictInput):
    agencies: Annotated[list[Code], Field(min_length=1, max_length=20)] | Literal["defaults"] = (
        Field(
            description='agency codes, or `"defaults"` for the default agencies of the '
            "incident's category (GET /v1/dispatch-defaults)"
        )
    )
    note: LongText | None = Field(default=None, description="instructions for the agencies")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"agencies": "defaults", "note": "Dua korban, satu terjepit"},
                {"agencies": ["damkar", "dinkes"]},
            ]
        }
    )


class DispatchUpdate(StrictInput):
    status: DispatchStatus
    reason: ShortText | None = Field(default=None, description="required when declining")
    remark: ShortText | None = Field(default=None, description="goes to the incident timeline")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "acknowledged"},
                {"status": "en_route", "remark": "Unit 3 berangkat, perkiraan 10 menit"},
                {"status": "declined", "reason": "Di luar wilayah kerja, diteruskan ke Pos Timur"},
            ]
        }
    )


class LocationFacts(Output):
    """The incident's best location: an operator-confirmed one, else the most precise."""

    lat: float | None
    lon: float | None
    radius_m: float | None
    source: str
    method: str | None
    address: str | None
    confirmed: bool
    observed_at: datetime


class CallerFacts(Output):
    number: str | None
    name: str | None


class IncidentCore(Output):
    id: int
    status: Status
    category: Category | None
    classification: Classification | None
    priority: int = Field(description="1 is the most urgent")
    address: str | None
    landmark: str | None = Field(
        default=None, description="what the caller says is near: how a crew finds the place"
    )
    summary: str | None
    created_at: datetime


class IncidentFacts(IncidentCore):
    """What an agency needs to act on a dispatch."""

    location: LocationFacts | None = Field(
        default=None, description="only on single-dispatch reads (each read is audited)"
    )
    has_location: bool = False
    caller: CallerFacts | None = Field(
        default=None, description="only for agencies allowed the caller's number"
    )


class DispatchOut(Output):
    id: int
    incident_id: int
    agency_id: int
    agency_code: str
    agency_name: str
    status: DispatchStatus
    note: str | None
    decline_reason: str | None
    created_by: str
    created_at: datetime = Field(description="when it was sent")
    updated_at: datetime
    acknowledged_at: datetime | None
    en_route_at: datetime | None
    on_scene_at: datetime | None
    completed_at: datetime | None
    declined_at: datetime | None
    unack_alerted_at: datetime | None = Field(
        description="when the overdue alert was raised; null again after a resend (re-armed)"
    )
    resend_count: int = Field(
        default=0, description="how often the centre sent it again while it was not acknowledged"
    )
    last_resent_at: datetime | None = Field(
        default=None,
        description="the last resend; the overdue alert counts from it, the acknowledgement "
        "time from `created_at`",
    )
    allowed_statuses: list[DispatchStatus]
    incident: IncidentFacts


class DispatchBatchOut(Output):
    items: list[DispatchOut] = Field(description="dispatches created by this request")
    already_active: list[DispatchOut] = Field(
        description="requested agencies that already had an active dispatch for the incident"
    )


class DispatchPage(Output):
    items: list[DispatchOut]
    next_cursor: str | None


class CategoryDefaults(Output):
    category: Category
    agencies: list[str]


class CategoryDefaultsUpdate(StrictInput):
    agencies: Annotated[list[Code], Field(max_length=20)]

    model_config = ConfigDict(json_schema_extra={"examples": [{"agencies": ["dinkes", "polri"]}]})


class DispatchSettingsUpdate(StrictInput):
    webhook_url: WebhookUrl | None = Field(
        default=None, description="where dispatch messages are POSTed; null: no webhook"
    )
    webhook_secret: WebhookSecret | None = Field(
        default=None,
        description="HMAC key (32-200 printable characters). Omitted: kept, or generated once "
        "when the first URL is set. Never returned later.",
    )
    rotate_secret: bool = Field(default=False, description="generate a new secret now")
    share_caller: bool = Field(
        default=False, description="may the caller's number and name go to this agency"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"webhook_url": "https://damkar.example.go.id/siaga112/hook", "share_caller": True}
            ]
        }
    )


class DispatchSettingsOut(Output):
    agency_id: int
    agency_code: str
    webhook_url: str | None
    has_webhook_secret: bool
    share_caller: bool
    updated_at: datetime | None
    webhook_secret: str | None = Field(
        default=None,
        description="only in the response to the request that generated it; store it now",
    )


OutboxStatus = Literal["pending", "failing", "delivered", "all"]


class OutboxOut(Output):
    id: int
    agency_id: int
    agency_code: str
    dispatch_id: int
    event: str
    idempotency_key: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    last_status_code: int | None
    created_at: datetime


class OutboxPage(Output):
    items: list[OutboxOut]
    next_cursor: str | None
