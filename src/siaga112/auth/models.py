from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        # An agency key is bound to exactly one agency; no other key is.
        CheckConstraint("(role = 'agency') = (agency_id IS NOT NULL)", name="agency_scope"),
        # Only an operator key acts as one operator (its own queue session and phone).
        CheckConstraint(
            "operator_extension IS NULL OR role = 'operator'", name="operator_extension_role"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]
    agency_id: Mapped[int | None] = mapped_column(
        ForeignKey("agencies.id", ondelete="RESTRICT"), index=True
    )
    # The operator (SIP extension) an operator key acts as; without it the key may not act on
    # queue sessions or callbacks. Not a foreign key: the key outlives an operator's account.
    operator_extension: Mapped[str | None] = mapped_column(String(8))
    # After this the key is refused like a revoked one; None: no expiry.
    expires_at: Mapped[datetime | None]
