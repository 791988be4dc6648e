"""Dispatches, per-category default agencies, per-agency delivery settings, and the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base, TimestampMixin


class Dispatch(TimestampMixin, Base):
    """One incident handed to one agency."""

    __tablename__ = "dispatches"
    __table_args__ = (
        # At most one active dispatch per incident and agency; after completed/declined the
        # centre may send the agency again.
        Index(
            "uq_dispatches_active_incident_agency",
            "incident_id",
            "agency_id",
            unique=True,
            postgresql_where=text("status NOT IN ('completed', 'declined')"),
        ),
        # The acknowledgement watchdog looks only at unalerted dispatches still `sent`.
        Index(
            "ix_dispatches_unacknowledged",
            "created_at",
            postgresql_where=text("status = 'sent' AND unack_alerted_at IS NULL"),
        ),
        Index("ix_dispatches_agency_created", "agency_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(20))
    # Instructions from the centre to the agency.
    note: Mapped[str | None] = mapped_column(String(4000))
    decline_reason: Mapped[str | None] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(120))
    acknowledged_at: Mapped[datetime | None]
    en_route_at: Mapped[datetime | None]
    on_scene_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    declined_at: Mapped[datetime | None]
    unack_alerted_at: Mapped[datetime | None]


class CategoryAgency(Base):
    """The agencies a category is dispatched to by default; editable per site."""

    __tablename__ = "category_agencies"

    category: Mapped[str] = mapped_column(String(20), primary_key=True)
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE"), primary_key=True
    )


class AgencyDispatchSettings(Base):
    """How an agency's own system is reached. The HMAC secret is write-only through the API."""

    __tablename__ = "agency_dispatch_settings"

    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE"), primary_key=True
    )
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    # May the caller's number and name go to this agency (webhook and API)?
    share_caller: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class WebhookOutbox(Base):
    """A message to an agency's system, written in the same transaction as the change it tells
    of, and delivered by the worker until the receiver answers 2xx."""

    __tablename__ = "webhook_outbox"
    __table_args__ = (
        Index(
            "ix_webhook_outbox_due",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL"),
        ),
        Index("ix_webhook_outbox_dispatch_id", "dispatch_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    agency_id: Mapped[int] = mapped_column(
        ForeignKey("agencies.id", ondelete="CASCADE"), index=True
    )
    dispatch_id: Mapped[int] = mapped_column(ForeignKey("dispatches.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_status_code: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
