"""Every model of every capability, so that Alembic and the tests see the whole schema (kept out of
`siaga112.db`, which every capability imports)."""

from siaga112.accounts.models import ConsoleSession, ConsoleUser
from siaga112.agencies.models import Agency
from siaga112.audit.models import AuditEvent
from siaga112.auth.models import ApiKey
from siaga112.callbacks.models import Callback, CallbackAttempt
from siaga112.callers.flag_models import NumberFlag
from siaga112.calls.cursors import ReadCursor, RecordStart
from siaga112.calls.models import Call
from siaga112.db.base import Base
from siaga112.dispatch.models import (
    AgencyDispatchSettings,
    CategoryAgency,
    Dispatch,
    WebhookOutbox,
)
from siaga112.events.models import StreamEvent
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
    "RecordStart",
    "Recording",
    "StreamEvent",
    "WebhookOutbox",
]
