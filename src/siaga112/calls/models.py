from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base, TimestampMixin


class Call(TimestampMixin, Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_offered_at_id", "offered_at", "id"),
        # Caller history looks a number up in every column and form it was stored in: newest
        # first a page at a time, counted from the index alone (siaga112.callers.matching).
        *(
            Index(
                f"ix_calls_{column}_offered_at_id",
                column,
                "offered_at",
                "id",
                postgresql_include=["incident_id"],
            )
            for column in ("caller_e164", "caller_number", "asserted_number")
        ),
        # Calls whose own locations were never derived (deferred under load, failed, or
        # reconciled): what the location sweep reads.
        Index(
            "ix_calls_locations_pending",
            "offered_at",
            postgresql_where=text(
                "locations_done_at IS NULL AND (pani_raw IS NOT NULL "
                "OR geoloc_effective IS NOT NULL OR geolocation_raw IS NOT NULL)"
            ),
        ),
        # A node's calls still open: what the lost-node rule reads at every AMI login
        # (siaga112.calls.lost), without scanning the centre's whole call history.
        Index(
            "ix_calls_open_by_node",
            "node",
            "offered_at",
            postgresql_where=text("state NOT IN ('ended', 'abandoned')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # Asterisk's Uniqueid of the caller channel: replays of the same call hit this key.
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    linkedid: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[str | None] = mapped_column(String(200))
    caller_number: Mapped[str | None] = mapped_column(String(64))
    caller_name: Mapped[str | None] = mapped_column(String(200))
    caller_e164: Mapped[str | None] = mapped_column(String(32))
    asserted_number: Mapped[str | None] = mapped_column(String(64))
    presentation: Mapped[str | None] = mapped_column(String(40))
    caller_id_available: Mapped[bool]
    dialled_number: Mapped[str | None] = mapped_column(String(32))
    pai_raw: Mapped[str | None] = mapped_column(String(1000))
    pani_raw: Mapped[str | None] = mapped_column(String(1000))
    geolocation_raw: Mapped[str | None] = mapped_column(String(2000))
    # ${GEOLOC_PROFILE(effective_location)} and (method): the location Asterisk resolved from a
    # PIDF-LO body, kept so that a call whose location step was deferred can be located later.
    geoloc_effective: Mapped[str | None] = mapped_column(String(2000))
    geoloc_method: Mapped[str | None] = mapped_column(String(40))
    # When the call's own locations (cell, PIDF-LO, by-reference fetch) were derived; NULL
    # while that is still to do (the location sweep picks it up).
    locations_done_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(20))
    # How the row came to be: agi (live), ami (tracker saw it first), reconciled (after downtime).
    source: Mapped[str] = mapped_column(String(20))
    # The PBX node (Asterisk systemname) that took the call: where call control finds its
    # channel. NULL for calls recorded before nodes were recorded.
    node: Mapped[str | None] = mapped_column(String(31))
    queue: Mapped[str | None] = mapped_column(String(80))
    operator: Mapped[str | None] = mapped_column(String(80))
    outcome: Mapped[str | None] = mapped_column(String(30))
    hangup_cause: Mapped[str | None] = mapped_column(String(80))
    offered_at: Mapped[datetime]
    enqueued_at: Mapped[datetime | None]
    ringing_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    # First time an overflow destination (supervisors, a neighbouring centre) was rung for it.
    overflowed_at: Mapped[datetime | None]
    transferred_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
