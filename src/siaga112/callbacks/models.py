"""A call on the callback worklist that someone acted on, and each attempt to call back.

Calls that nobody has acted on yet have no row: the worklist is read from the calls themselves
(abandoned in the queue, or an incident classified ghost/silent), so no call can be missing
from it. A row appears at the first attempt and keeps the status, the claim and the counts."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.calls.models import Call
from siaga112.db.base import Base, TimestampMixin


class Callback(TimestampMixin, Base):
    __tablename__ = "callbacks"
    __table_args__ = (
        # One operator at a time calls a number back, whichever of its calls they started
        # from: the database refuses a second claim, however close together they come.
        Index(
            "ux_callbacks_number_in_progress",
            "number",
            unique=True,
            postgresql_where=text("status = 'in_progress'"),
        ),
        Index("ix_callbacks_number_reached", "number", "reached_at"),
    )

    call_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    # The number called back (the incident's callback number, E.164 where it could be).
    number: Mapped[str] = mapped_column(String(64))
    # pending, in_progress, reached, no_answer, busy, failed, not_needed
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    # The claim while in_progress: who (API key label), from which extension, until when.
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    operator_extension: Mapped[str | None] = mapped_column(String(20))
    claim_expires_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_attempt_by: Mapped[str | None] = mapped_column(String(20))
    last_outcome: Mapped[str | None] = mapped_column(String(30))
    reached_at: Mapped[datetime | None]
    # Why an operator closed it as not needed.
    note: Mapped[str | None] = mapped_column(String(500))


class CallbackAttempt(Base):
    """One Originate: the operator's phone first, then the caller's."""

    __tablename__ = "callback_attempts"
    __table_args__ = (
        # Attempts still waiting for their outcome, for the sweep that closes lost ones.
        Index("ix_callback_attempts_open", "expires_at", postgresql_where=text("outcome IS NULL")),
        # An operator runs one callback at a time.
        Index(
            "ux_callback_attempts_operator_open",
            "operator_extension",
            unique=True,
            postgresql_where=text("outcome IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    call_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("callbacks.call_id", ondelete="CASCADE"), index=True
    )
    # The Uniqueid (and AMI ActionID) of the operator's leg: siaga112-cb-<token>.
    channel_id: Mapped[str] = mapped_column(String(150), unique=True)
    operator_extension: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(120))
    number: Mapped[str] = mapped_column(String(64))
    dialled: Mapped[str] = mapped_column(String(32))
    # The worklist status before this attempt: restored when the caller was never dialled.
    status_before: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    # Facts from the AMI (siaga112.telephony.callback_legs.LegFacts).
    originated: Mapped[bool | None]
    originate_reason: Mapped[int | None]
    operator_answered_at: Mapped[datetime | None]
    dial_status: Mapped[str | None] = mapped_column(String(20))
    dial_ended_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    hangup_cause: Mapped[str | None] = mapped_column(String(80))
    # reached, no_answer, busy, failed, operator_unavailable; NULL while open.
    outcome: Mapped[str | None] = mapped_column(String(30))
    decided_at: Mapped[datetime | None]


# The worklist reads abandoned calls newest first (declared here, beside the only reader).
Index(
    "ix_calls_abandoned_offered_at",
    Call.offered_at,
    Call.id,
    postgresql_where=Call.state == "abandoned",
)
