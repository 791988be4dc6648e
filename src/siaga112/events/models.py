"""Live-stream events that belong to no incident (operator state changes): they share the id
sequence of the incident timeline, so one Last-Event-ID orders and resumes both."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base
from siaga112.incidents.models import LIVE_EVENT_ID_SEQ


class StreamEvent(Base):
    __tablename__ = "stream_events"

    id: Mapped[int] = mapped_column(
        BigInteger, server_default=text(f"nextval('{LIVE_EVENT_ID_SEQ}')"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor: Mapped[str] = mapped_column(String(120))
    # operator_state_changed
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]]
