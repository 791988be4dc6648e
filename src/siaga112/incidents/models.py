from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    String,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base, TimestampMixin

# The sequence every event of the live stream takes its id from (migration 0015).
LIVE_EVENT_ID_SEQ = "live_event_id_seq"


class Incident(TimestampMixin, Base):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_created_at_id", "created_at", "id"),
        # The AGI statement's repeat-caller check (this number within the last minutes), and a
        # caller's incidents newest first a page at a time, counted by classification from the
        # index alone (siaga112.callers.matching).
        Index(
            "ix_incidents_caller_number_created_at_id",
            "caller_number",
            "created_at",
            "id",
            postgresql_include=["classification"],
        ),
        CheckConstraint("priority BETWEEN 1 AND 5", name="priority_range"),
        CheckConstraint("duplicate_of_id IS NULL OR duplicate_of_id <> id", name="not_self_dup"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    category: Mapped[str | None] = mapped_column(String(20), index=True)
    classification: Mapped[str | None] = mapped_column(String(20), index=True)
    priority: Mapped[int]
    # call, walk_in, radio, text, other
    channel: Mapped[str] = mapped_column(String(20))
    caller_number: Mapped[str | None] = mapped_column(String(64))
    caller_name: Mapped[str | None] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    # What the caller says is near (a mosque, a market, a school): how a crew finds the place
    # where the street address is unknown or wrong.
    landmark: Mapped[str | None] = mapped_column(String(300))
    # Derived for reports (siaga112.incidents.kecamatan): from the address, else a location.
    kecamatan: Mapped[str | None] = mapped_column(String(80))
    summary: Mapped[str | None] = mapped_column(String(4000))
    # The Asterisk Linkedid of the call that opened it: one incident per call, however often
    # the AGI request or an AMI event is replayed.
    origin_linkedid: Mapped[str | None] = mapped_column(String(64), unique=True)
    duplicate_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    created_by: Mapped[str] = mapped_column(String(120))
    closed_at: Mapped[datetime | None]


class IncidentEvent(Base):
    """One line of an incident's timeline, and an event of the live stream (events/hub.py)."""

    __tablename__ = "incident_events"

    # Shared with stream_events: one id orders and resumes the whole live stream.
    id: Mapped[int] = mapped_column(
        BigInteger, server_default=text(f"nextval('{LIVE_EVENT_ID_SEQ}')"), primary_key=True
    )
    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor: Mapped[str] = mapped_column(String(120))
    # created, call_offered, updated, status_changed, note, call_answered, ... (docs/api.md)
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]]
