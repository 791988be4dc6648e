from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base


class Recording(Base):
    """One recording file of a call (a call transferred back to the queue and answered again
    has one per answer)."""

    __tablename__ = "recordings"
    __table_args__ = (
        # The purge looks for expired recordings that are neither purged nor on hold.
        Index(
            "ix_recordings_purgeable",
            "started_at",
            postgresql_where=text("status <> 'purged' AND NOT legal_hold"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    call_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("calls.id", ondelete="SET NULL"), index=True
    )
    # The caller channel's Uniqueid, as in the file name (kept if the call row goes).
    uniqueid: Mapped[str] = mapped_column(String(64))
    # Relative to the recordings root (SIAGA112_PBX__RECORDINGS_PATH): YYYY/MM/DD/<name>.
    path: Mapped[str] = mapped_column(String(300), unique=True)
    format: Mapped[str] = mapped_column(String(10))
    # started: the operator answered (MixMonitor started); ended: the file's last write.
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[float | None]
    sha256: Mapped[str | None] = mapped_column(String(64))
    # available, or purged (retention); a file gone outside siaga112 answers 404 on download
    status: Mapped[str] = mapped_column(String(20))
    legal_hold: Mapped[bool] = mapped_column(server_default=text("false"))
    legal_hold_reason: Mapped[str | None] = mapped_column(String(500))
    legal_hold_by: Mapped[str | None] = mapped_column(String(120))
    legal_hold_at: Mapped[datetime | None]
    linked_at: Mapped[datetime] = mapped_column(server_default=func.now())
    purged_at: Mapped[datetime | None]
