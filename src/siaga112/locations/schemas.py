from __future__ import annotations

import uuid
from datetime import datetime

from siaga112.schemas import Output


class LocationOut(Output):
    id: uuid.UUID
    call_id: uuid.UUID | None
    incident_id: int | None
    source: str
    method: str | None
    lat: float | None
    lon: float | None
    radius_m: float | None
    confidence: int | None
    address: str | None
    observed_at: datetime
    confirmed: bool
