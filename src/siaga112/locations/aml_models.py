"""AML messages as received: matched to a call, or kept unmatched until a call turns up."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base


class AmlMessage(Base):
    __tablename__ = "aml_messages"
    __table_args__ = (
        CheckConstraint("channel IN ('https', 'sms')", name="channel_known"),
        CheckConstraint("status IN ('matched', 'unmatched')", name="status_known"),
        # The unmatched ones are looked up by number whenever a call is recorded.
        Index("ix_aml_messages_status_number_e164", "status", "number_e164", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    received_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    # https or sms
    channel: Mapped[str] = mapped_column(String(10))
    # The configured sender whose secret verified the signature.
    sender: Mapped[str] = mapped_column(String(80))
    # The handset's number as the message or the SMS gateway gave it, and as E.164.
    number: Mapped[str | None] = mapped_column(String(64))
    number_e164: Mapped[str | None] = mapped_column(String(32))
    # The signed body as received (form-encoded, signature removed) and what it parsed into.
    payload: Mapped[str] = mapped_column(Text)
    parsed: Mapped[dict[str, Any]]
    # SHA-256 of the signed bytes: the same message again is a replay.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    # When the handset got its fix, and the time the message is matched on.
    observed_at: Mapped[datetime | None]
    reference_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12))
    # Signed (SMS: received by the SMSC) longer than the replay window before it reached
    # siaga112: accepted all the same (its digest is new), and marked.
    late: Mapped[bool] = mapped_column(server_default=text("false"), default=False)
    call_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), index=True
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    location_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("locations.id", ondelete="SET NULL")
    )
    matched_at: Mapped[datetime | None]
