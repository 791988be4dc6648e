"""Console users and their sessions. Passwords are stored as argon2 hashes, session tokens
as SHA-256 hashes: a copy of the database signs nobody in."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base, TimestampMixin


class ConsoleUser(TimestampMixin, Base):
    __tablename__ = "console_users"
    __table_args__ = (
        # Agency staff see one agency's dispatches; nobody else is bound to an agency.
        CheckConstraint("(role = 'agency') = (agency_id IS NOT NULL)", name="agency_scope"),
        # The console is for people: integrators use API keys.
        CheckConstraint(
            "role IN ('operator', 'supervisor', 'agency', 'admin')", name="console_role"
        ),
        CheckConstraint(
            "operator_extension IS NULL OR role = 'operator'", name="extension_operator_only"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    agency_id: Mapped[int | None] = mapped_column(
        ForeignKey("agencies.id", ondelete="RESTRICT"), index=True
    )
    # The operator's SIP extension: the calls its phone answers are this user's.
    operator_extension: Mapped[str | None] = mapped_column(String(20), unique=True)
    disabled: Mapped[bool] = mapped_column(server_default=text("false"))
    failed_attempts: Mapped[int] = mapped_column(server_default=text("0"))
    locked_until: Mapped[datetime | None]


class ConsoleSession(Base):
    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_user_active", "user_id", "revoked_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(ForeignKey("console_users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Synchronizer token: every unsafe request of this session carries it in a header.
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_seen_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
