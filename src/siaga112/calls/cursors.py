"""Where reconciliation stopped reading Asterisk's own records (survives restarts)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String, func
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base


class ReadCursor(Base):
    __tablename__ = "read_cursors"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Identifies the file (device:inode): a rotated or recreated file starts again at 0.
    file_id: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
