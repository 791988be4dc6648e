"""Imports every model so that Alembic and tests see the whole schema."""

from siaga112.accounts.models import ConsoleSession, ConsoleUser
from siaga112.agencies.models import Agency
from siaga112.audit.models import AuditEvent
from siaga112.auth.models import ApiKey
from siaga112.callbacks.models import Callback, CallbackAttempt
from siaga112.calls.cursors import ReadCursor
from siaga112.calls.models import Call
from siaga112.db.base import Base
from siaga112.dispatch.models import (
    AgencyDispatchSettings,
    CategoryAgency,
    Dispatch,
    WebhookOutbox,
)
from siaga112.events.models import StreamEvent
from siaga112.flags.models import NumberFlag
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.locations.aml_models import AmlMessage
from siaga112.locations.models import CellTower, Location
from siaga112.operators.models import (
    Operator,
    OperatorLiveState,
    PsAor,
    PsAuth,
    PsEndpoint,
)
from siaga112.recordings.models import Recording

__all__ = [
    "Agency",
    "AgencyDispatchSettings",
    "AmlMessage",
    "ApiKey",
    "AuditEvent",
    "Base",
    "Call",
    "Callback",
    "CallbackAttempt",
    "CategoryAgency",
    "CellTower",
    "ConsoleSession",
    "ConsoleUser",
    "Dispatch",
    "Incident",
    "IncidentEvent",
    "Location",
    "NumberFlag",
    "Operator",
    "OperatorLiveState",
    "PsAor",
    "PsAuth",
    "PsEndpoint",
    "ReadCursor",
    "Recording",
    "StreamEvent",
    "WebhookOutbox",
]
