"""Where reconciliation stopped reading Asterisk's own records (survives restarts), and where this
database's record starts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, SmallInteger, String, func
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base


class ReadCursor(Base):
    __tablename__ = "read_cursors"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    # Identifies the file (device:inode): a rotated or recreated file starts again at 0.
    file_id: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class RecordStart(Base):
    """One row, written when the database is created: calls Asterisk recorded before it belong
    to another database's record (a new database next to an old PBX adopts none of them)."""

    __tablename__ = "record_start"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False, default=1)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
