from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, SmallInteger, String, func, text
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
    confirmed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CellTower(Base):
    """One radio cell with its estimated position (OpenCelliD layout, DESIGN.md §5).

    Key as OpenCelliD has it: ``area`` is the LAC (GSM, UMTS) or TAC (LTE, NR); ``cell`` is the
    CI (GSM), the 28-bit UTRAN cell id RNC<<16|CID (UMTS), the ECI (LTE) or the 36-bit NCI (NR).
    ``net`` is the MNC as a number, so 2- and 3-digit MNCs with the same value share a key, as
    they do in OpenCelliD.
    """

    __tablename__ = "cell_towers"
    __table_args__ = (
        CheckConstraint("lat BETWEEN -90 AND 90", name="lat_range"),
        CheckConstraint("lon BETWEEN -180 AND 180", name="lon_range"),
        CheckConstraint("range_m >= 0", name="range_positive"),
    )

    radio: Mapped[str] = mapped_column(String(8), primary_key=True)
    mcc: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    net: Mapped[int] = mapped_column(primary_key=True)
    area: Mapped[int] = mapped_column(primary_key=True)
    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    unit: Mapped[int | None]
    lon: Mapped[float]
    lat: Mapped[float]
    range_m: Mapped[int]
    samples: Mapped[int | None]
    changeable: Mapped[bool | None]
    created: Mapped[datetime | None]
    updated: Mapped[datetime | None]
    average_signal: Mapped[int | None]
    imported_at: Mapped[datetime] = mapped_column(server_default=func.now())
