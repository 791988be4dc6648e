from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, func, text
from sqlalchemy.orm import Mapped, mapped_column

from siaga112.db.base import Base


class Location(Base):
    __tablename__ = "locations"
    __table_args__ = (
        CheckConstraint("lat IS NULL OR (lat BETWEEN -90 AND 90)", name="lat_range"),
        CheckConstraint("lon IS NULL OR (lon BETWEEN -180 AND 180)", name="lon_range"),
        CheckConstraint("radius_m IS NULL OR radius_m >= 0", name="radius_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    call_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), index=True
    )
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    # network_cell, pidf_lo, aml_sms, aml_https, operator
    source: Mapped[str] = mapped_column(String(20))
    method: Mapped[str | None] = mapped_column(String(40))
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    radius_m: Mapped[float | None]
    confidence: Mapped[int | None]
    address: Mapped[str | None] = mapped_column(String(500))
    observed_at: Mapped[datetime]
    raw: Mapped[dict[str, Any] | None]
    confirmed: Mapped[bool] = mapped_column(server_default=text("false"))
    confirmed_by: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
