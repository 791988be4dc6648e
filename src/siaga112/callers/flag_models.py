from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Identity, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base


class NumberFlag(Base):
    __tablename__ = "number_flags"
    __table_args__ = (
        # The AGI statement asks "is this number flagged now?" on every call.
        Index(
            "ix_number_flags_active",
            "number",
            "expires_at",
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # E.164 (+62...): the form the AGI step compares with the call's callback number.
    number: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(500))
    expires_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(120))
