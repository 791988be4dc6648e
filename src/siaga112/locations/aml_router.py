"""AML receivers (outside ``/v1``: they authenticate by HMAC, not by API key) and the list of
unmatched AML messages (under ``/v1``, bearer key with read permission)."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from siaga112.api.deps import Reader, RequestId, SessionDep
from siaga112.errors import DomainError, MalformedAml
from siaga112.locations.aml_service import AmlPolicy, list_unmatched, receive_aml
from siaga112.schemas import ERROR_RESPONSES, ErrorOut, Output, Timestamp

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
MAX_AML_BODY = 8 * 1024

_REJECTIONS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "`invalid_signature`: no sender's secret verifies"},
    409: {
        "model": ErrorOut,
        "description": (
            "`replayed`: seen before, or signed too far in the future; HTTPS also when signed "
            "longer than the replay window ago (a late SMS is accepted, marked `late`)"
        ),
    },
    413: {"model": ErrorOut, "description": "request body too large"},
    422: {"model": ErrorOut, "description": "`malformed_aml`: signed, but not valid AML"},
}

router = APIRouter(prefix="/aml/v1", tags=["aml"], responses=_REJECTIONS)
unmatched_router = APIRouter(prefix="/aml", tags=["aml"], responses=ERROR_RESPONSES)


class AmlAccepted(Output):
    id: uuid.UUID
    status: str
    """``matched`` (attached to a call) or ``unmatched`` (kept until its call turns up)."""
    late: bool = False
    """An SMS the SMSC received longer than the replay window ago: kept, matched on that time."""


class AmlMessageOut(Output):
    id: uuid.UUID
    received_at: datetime
    channel: str
    sender: str
    number: str | None
    number_e164: str | None
    observed_at: datetime | None
    reference_at: datetime
    lat: float | None
    lon: float | None
    radius_m: float | None
    confidence: int | None
    method: str | None
    late: bool


def _policy(request: Request) -> AmlPolicy:
    policy = getattr(request.app.state, "aml_policy", None)
    if not isinstance(policy, AmlPolicy):
        policy = AmlPolicy.from_settings(request.app.state.settings.locations)
        request.app.state.aml_policy = policy
    return policy


def _count(request: Request, name: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.inc(name)


async def _receive(
    request: Request,
    session: SessionDep,
    channel: str,
    sender_hint: str | None,
    request_id: str | None,
) -> AmlAccepted:
    try:
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != FORM:
            raise MalformedAml(f"send the message as {FORM}")
        body = await request.body()
        if len(body) > MAX_AML_BODY:
            raise MalformedAml(f"an AML message is at most {MAX_AML_BODY} bytes")
        receipt = await receive_aml(
            session=session,
            policy=_policy(request),
            channel=channel,
            body=body,
            sender_hint=sender_hint,
            request_id=request_id,
        )
        await session.commit()
    except DomainError as exc:
        # Nothing is stored for a refused message: it is counted and logged, never its content.
        await session.rollback()
        _count(request, f"aml_rejected_{exc.code}")
        log.warning(
            "aml %s refused (%s): %s; from %s",
            channel,
            exc.code,
            exc.message,
            request.client.host if request.client else "?",
        )
        raise
    _count(request, f"aml_{channel}_{receipt.status}")
    if receipt.late:
        _count(request, f"aml_{channel}_late")
    return AmlAccepted(id=receipt.id, status=receipt.status, late=receipt.late)


_SENDER = Header(
    alias="X-AML-Sender",
    max_length=80,
    description="Name of the configured sender; without it every sender's secret is tried",
)


@router.post(
    "/https",
    response_model=AmlAccepted,
    summary="Receive an AML HTTPS message (form-encoded, signed)",
    description=(
        "The Android ELS / AML HTTPS fields, form-encoded, with `hmac=<hex HMAC-SHA256>` as the "
        "last field, computed with the sender's secret over every byte of the body before "
        "`&hmac=`. Freshness is checked on `timestamp` (Unix ms, added by a relay), else "
        "`time`, else `location_time`. Example body: `v=1&emergency_number=112&"
        "time=1732500000000&location_latitude=-6.28211&location_longitude=106.97432&"
        "location_time=1732500002000&location_accuracy=12&location_source=gps&"
        "device_number=%2B6281234567890&hmac=...`"
    ),
)
async def receive_https(
    request: Request,
    session: SessionDep,
    request_id: RequestId,
    sender: Annotated[str | None, _SENDER] = None,
) -> AmlAccepted:
    return await _receive(request, session, "https", sender, request_id)


@router.post(
    "/sms",
    response_model=AmlAccepted,
    summary="Receive an AML SMS forwarded by the SMS gateway (form-encoded, signed)",
    description=(
        "Fields: `number` (the SMS originator), `text` (an AML text SMS, ETSI TS 103 625) or "
        "`data` (a data SMS's user data, base64; `udhi=1` when it starts with a user data "
        "header), `timestamp` (when the SMSC received it, Unix ms), then `hmac` as for HTTPS. "
        "The message is matched to its call on `timestamp`, not on the handset's fix time "
        "`top`. An SMS whose `timestamp` is older than the replay window is accepted when it "
        "was never received before, with `late: true`."
    ),
)
async def receive_sms(
    request: Request,
    session: SessionDep,
    request_id: RequestId,
    sender: Annotated[str | None, _SENDER] = None,
) -> AmlAccepted:
    return await _receive(request, session, "sms", sender, request_id)


def _out(row: Any) -> AmlMessageOut:
    parsed = row.parsed or {}
    return AmlMessageOut(
        id=row.id,
        received_at=row.received_at,
        channel=row.channel,
        sender=row.sender,
        number=row.number,
        number_e164=row.number_e164,
        observed_at=row.observed_at,
        reference_at=row.reference_at,
        lat=parsed.get("lat"),
        lon=parsed.get("lon"),
        radius_m=parsed.get("radius_m"),
        confidence=parsed.get("confidence"),
        method=parsed.get("method"),
        late=bool(row.late),
    )


@unmatched_router.get(
    "/unmatched",
    response_model=list[AmlMessageOut],
    summary="AML messages no call matched (yet), newest first",
)
async def get_unmatched(
    session: SessionDep,
    actor: Reader,
    request_id: RequestId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    since: Annotated[Timestamp | None, Query()] = None,
) -> list[AmlMessageOut]:
    rows = await list_unmatched(
        session=session, actor=actor, limit=limit, since=since, request_id=request_id
    )
    await session.commit()  # the audit of the read
    return [_out(r) for r in rows]
