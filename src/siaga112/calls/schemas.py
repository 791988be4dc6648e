from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ConfigDict, Field

from siaga112.schemas import Output


class CallOut(Output):
    id: uuid.UUID
    uniqueid: str
    linkedid: str
    channel: str | None
    caller_number: str | None
    caller_name: str | None
    caller_e164: str | None
    asserted_number: str | None
    presentation: str | None
    caller_id_available: bool
    dialled_number: str | None
    pani_raw: str | None
    geolocation_raw: str | None
    state: str
    source: str
    node: str | None = Field(
        description="the PBX node (Asterisk systemname) that took the call; null when unknown"
    )
    queue: str | None
    operator: str | None
    outcome: str | None
    hangup_cause: str | None
    offered_at: datetime
    enqueued_at: datetime | None
    ringing_at: datetime | None
    answered_at: datetime | None
    overflowed_at: datetime | None = Field(
        description="first time an overflow destination (supervisors, a neighbouring centre) "
        "was rung for this caller; null when operators alone handled it"
    )
    transferred_at: datetime | None
    ended_at: datetime | None
    incident_id: int | None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0b7f7d0e-6c53-4b8e-9d8e-2f3c1a9b5e11",
                    "uniqueid": "pbx-a-1763886662.118",
                    "linkedid": "pbx-a-1763886662.118",
                    "channel": "PJSIP/carrier-00000076",
                    "caller_number": "081234567890",
                    "caller_name": None,
                    "caller_e164": "+6281234567890",
                    "asserted_number": "+6281234567890",
                    "presentation": "allowed_not_screened",
                    "caller_id_available": True,
                    "dialled_number": "112",
                    "pani_raw": "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E",
                    "geolocation_raw": None,
                    "state": "ended",
                    "source": "agi",
                    "node": "pbx-a",
                    "queue": "emergency",
                    "operator": "6001",
                    "outcome": "answered",
                    "hangup_cause": "16",
                    "offered_at": "2026-11-23T08:31:02.101Z",
                    "enqueued_at": "2026-11-23T08:31:02.140Z",
                    "ringing_at": "2026-11-23T08:31:02.150Z",
                    "answered_at": "2026-11-23T08:31:06.420Z",
                    "transferred_at": None,
                    "ended_at": "2026-11-23T08:33:10.000Z",
                    "incident_id": 42,
                }
            ]
        }
    )


class CallPage(Output):
    items: list[CallOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at end")
