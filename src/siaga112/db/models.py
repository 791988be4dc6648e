"""Imports every model so that Alembic and tests see the whole schema."""

from siaga112.agencies.models import Agency
from siaga112.audit.models import AuditEvent
from siaga112.auth.models import ApiKey
from siaga112.calls.models import Call
from siaga112.db.base import Base
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.locations.models import Location

__all__ = [
    "Agency",
    "ApiKey",
    "AuditEvent",
    "Base",
    "Call",
    "Incident",
    "IncidentEvent",
    "Location",
]
