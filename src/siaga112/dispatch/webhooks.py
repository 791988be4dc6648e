"""The message siaga112 POSTs to an agency's system, how it is signed, and the retry delay.

The document follows the spirit of NENA's Emergency Incident Data Object (EIDO, NENA-STA-021):
separate components for the incident, its location, the caller, the notes and the dispatch
(the agency's part), so that a receiver can map it onto its own CAD. It is built once, when the
change happens, and stored in the outbox: every retry sends the same bytes.

Signature: `X-Siaga112-Signature: sha256=<hex HMAC-SHA256, with the agency's secret, of
"<X-Siaga112-Timestamp>." followed by the raw body>`. `X-Siaga112-Timestamp` is the time of this
attempt (Unix seconds), so a retry days later carries a fresh timestamp and a fresh signature,
and a captured request stops verifying once it is old. A receiver:

1. recomputes the HMAC over timestamp, ".", body and compares in constant time;
2. refuses a timestamp further than its freshness window from its own clock (5 minutes is
   usual; see :data:`FRESHNESS_S`);
3. de-duplicates on `Idempotency-Key` (= the body's `message_id`), keeping the keys it saw for
   at least the freshness window: a request replayed inside the window changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from siaga112.dispatch.lifecycle import DispatchStatus
from siaga112.dispatch.schemas import CallerFacts, IncidentCore, LocationFacts

SCHEMA: Final = "siaga112.eido/1"
SIGNATURE_HEADER = "X-Siaga112-Signature"
TIMESTAMP_HEADER = "X-Siaga112-Timestamp"
EVENT_HEADER = "X-Siaga112-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"


class NoteComponent(BaseModel):
    at: datetime
    author: str
    text: str


class AgencyRef(BaseModel):
    code: str
    name: str


class DispatchComponent(BaseModel):
    id: int
    agency: AgencyRef
    status: DispatchStatus
    note: str | None = Field(description="the centre's instructions")
    decline_reason: str | None
    remark: str | None = Field(description="remark given with this status change")
    sent_at: datetime
    status_changed_at: datetime
    changed_by: str
    resend: int = Field(
        default=0,
        description="0 for the dispatch as first sent or changed; n for the centre's n-th "
        "resend of a dispatch not acknowledged yet (event `dispatch.resent`)",
    )


class WebhookMessage(BaseModel):
    """One dispatch event for an agency's system (EIDO-like components)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "schema": SCHEMA,
                    "message_id": "siaga112-dispatch-17-sent",
                    "event": "dispatch.sent",
                    "created_at": "2026-11-24T08:15:02.120000+00:00",
                    "incident": {
                        "id": 41,
                        "status": "dispatched",
                        "category": "kebakaran",
                        "classification": "emergency",
                        "priority": 1,
                        "address": "Jl. Raya Jatiasih No. 10, Bekasi",
                        "landmark": "seberang Masjid Al-Ikhlas",
                        "summary": "Rumah terbakar, dua orang terjebak di lantai dua",
                        "created_at": "2026-11-24T08:13:40.004000+00:00",
                    },
                    "location": {
                        "lat": -6.28211,
                        "lon": 106.97432,
                        "radius_m": 35.0,
                        "source": "pidf_lo",
                        "method": "gps",
                        "address": None,
                        "confirmed": False,
                        "observed_at": "2026-11-24T08:13:41+00:00",
                    },
                    "caller": {"number": "+6281234567890", "name": None},
                    "notes": [
                        {
                            "at": "2026-11-24T08:14:30+00:00",
                            "author": "key:operator-6001",
                            "text": "Api sudah membesar",
                        }
                    ],
                    "dispatch": {
                        "id": 17,
                        "agency": {"code": "damkar", "name": "Pemadam Kebakaran (Damkar)"},
                        "status": "sent",
                        "note": "Dua orang terjebak",
                        "decline_reason": None,
                        "remark": None,
                        "sent_at": "2026-11-24T08:15:02.120000+00:00",
                        "status_changed_at": "2026-11-24T08:15:02.120000+00:00",
                        "changed_by": "key:operator-6001",
                    },
                }
            ]
        }
    )

    schema_: Literal["siaga112.eido/1"] = Field(default=SCHEMA, alias="schema")
    message_id: str = Field(description="same as the Idempotency-Key header; dedup on it")
    event: str = Field(
        description="dispatch.<status>: sent, acknowledged, en_route, ...; dispatch.resent when "
        "the centre sends a dispatch not acknowledged yet again"
    )
    created_at: datetime
    incident: IncidentCore
    location: LocationFacts | None
    caller: CallerFacts | None = Field(description="only for agencies allowed the caller")
    notes: list[NoteComponent]
    dispatch: DispatchComponent


def idempotency_key(dispatch_id: int, status: DispatchStatus) -> str:
    """One message per dispatch and status: the lifecycle never reaches a status twice."""
    return f"siaga112-dispatch-{dispatch_id}-{status.value}"


def event_name(status: DispatchStatus) -> str:
    return f"dispatch.{status.value}"


# The centre sent a dispatch still waiting for its acknowledgement again (status stays `sent`).
RESENT_EVENT: Final = "dispatch.resent"


def resend_key(dispatch_id: int, resend: int) -> str:
    """One message per resend: the n-th resend of a dispatch is a new message, retried under
    its own key."""
    return f"siaga112-dispatch-{dispatch_id}-sent-resend-{resend}"


def message_payload(message: WebhookMessage) -> dict[str, Any]:
    return message.model_dump(mode="json", by_alias=True)


def canonical_body(payload: dict[str, Any]) -> bytes:
    """The bytes sent: stable across retries although jsonb does not keep key order."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# The freshness window the documentation suggests to receivers.
FRESHNESS_S: Final = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header of one attempt: HMAC-SHA256 over `timestamp`, ".", `body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float,
    window_s: float = FRESHNESS_S,
) -> bool:
    """What a receiver does (before de-duplicating on Idempotency-Key): the timestamp is
    recent, and the signature over timestamp and body matches, compared in constant time."""
    if signature is None or timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > window_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_delay(
    attempts: int, *, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Delay before the next attempt after `attempts` failed ones: exponential, capped, with
    "equal jitter" (half fixed, half random) so that receivers coming back are not hit by every
    sender at the same instant."""
    exp = min(max_s, base_s * 2.0 ** max(0, min(attempts - 1, 30)))
    r = (rng or _RNG).random()
    return exp / 2 + r * exp / 2


_RNG = random.SystemRandom()
