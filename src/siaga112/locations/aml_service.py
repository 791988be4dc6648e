"""AML use cases: receive a signed message, match it to its call, keep it when no call matches.

A message is checked in this order, and nothing is written unless every check passes:

1. **signature** (``invalid_signature``): HMAC-SHA256 of the body with a secret of a configured
   sender that may use the channel (:mod:`siaga112.locations.aml`);
2. **form and content** (``malformed_aml``): the AML text or fields parse and validate;
3. **freshness** (``replayed``): the signed timestamp is not ahead of now by more than the
   replay window, nor behind it, except for SMS (below);
4. **uniqueness** (``replayed``): no message with the same signed bytes was stored before (a
   unique digest, so two copies racing each other still give one row).

Late SMS: an SMS is store-and-forward; an SMSC or gateway that was down or congested delivers
genuine AML minutes or hours late, and refusing it would throw away a caller's location with
nothing kept. The digest alone already refuses every replay (rows are never deleted), so an SMS
received by the SMSC longer than the window ago is accepted when its digest is new, marked
``late``, and matched on its own receive time like any other (so a late copy of an old message
cannot attach to a current call). HTTPS keeps the window: it is posted by the handset (or a
relay) within seconds of the call, and a stale one is more likely a replayed capture whose
digest differs (re-signed) than a delayed delivery.

Matching: the handset's number (``+62``, ``62`` or ``0`` forms, normalised to E.164) and time.
The time is, for SMS, when the SMSC received it (the gateway's ``timestamp``), not the handset's
fix time ``top``: a fix may be minutes old, or the handset's clock wrong, while the SMS itself
is sent when the call is made; ``top`` stays the observed time of the location. For HTTPS it is
the call start the handset reports (``time``), else the fix time, else the relay's timestamp. A
message belongs to the call of that number offered at most ``match_before`` after that time
(AML may arrive before the call's row exists) and at most ``match_after_end`` after the call
ended (or while it lasts); the closest offered time wins. A matched message with a fix
becomes an ``aml_sms``/``aml_https`` location of the call and its incident. An unmatched one is
kept and listed; :func:`attach_pending_aml` attaches it when its call is recorded later, and
:func:`rematch_unmatched` retries the recent ones (for a message and a call that crossed).
Both sides take the same per-number advisory lock, so a message and a call recorded at the same
moment cannot miss each other.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor, system_actor
from siaga112.callers.matching import call_matches
from siaga112.callers.numbers import normalise_indonesian_number
from siaga112.calls.models import Call
from siaga112.config import LocationSettings
from siaga112.errors import InvalidSignature, MalformedAml, Replayed
from siaga112.locations.aml import (
    AmlMessage,
    AmlResult,
    decode_data_sms,
    epoch_to_datetime,
    parse_aml_https,
    parse_aml_sms,
    parse_form,
    split_signature,
    verify_signature,
)
from siaga112.locations.aml_models import AmlMessage as AmlRow
from siaga112.locations.service import add_location
from siaga112.locations.sources import LocationSource

log = logging.getLogger(__name__)

SYSTEM_AML = system_actor("aml")
DEFAULT_MATCH_BEFORE = timedelta(seconds=60)
DEFAULT_MATCH_AFTER_END = timedelta(minutes=30)
# A call row that never got an end (a lost hangup) must not collect AML forever.
MAX_CALL_SPAN = timedelta(hours=6)
CHANNELS = ("https", "sms")
_SOURCES = {"https": LocationSource.AML_HTTPS, "sms": LocationSource.AML_SMS}


@dataclass(frozen=True, slots=True)
class AmlSender:
    name: str
    channels: frozenset[str]
    secrets: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AmlPolicy:
    """Who may send, and the time windows; built once from the settings."""

    senders: tuple[AmlSender, ...]
    replay_window: timedelta = timedelta(minutes=10)
    match_before: timedelta = DEFAULT_MATCH_BEFORE
    match_after_end: timedelta = DEFAULT_MATCH_AFTER_END

    @classmethod
    def from_settings(cls, settings: LocationSettings) -> AmlPolicy:
        return cls(
            senders=tuple(
                AmlSender(
                    name=name,
                    channels=frozenset(sender.channels),
                    secrets=tuple(s.get_secret_value().encode() for s in sender.secrets),
                )
                for name, sender in settings.aml_senders.items()
            ),
            replay_window=timedelta(seconds=settings.aml_replay_window_s),
            match_before=timedelta(seconds=settings.aml_match_before_s),
            match_after_end=timedelta(seconds=settings.aml_match_after_end_s),
        )


@dataclass(frozen=True, slots=True)
class AmlReceipt:
    id: uuid.UUID
    status: str
    call_id: uuid.UUID | None
    incident_id: int | None
    location_id: uuid.UUID | None
    late: bool = False


# -- checks (no database) ---------------------------------------------------------------------


def authenticate(
    *, policy: AmlPolicy, channel: str, body: bytes, sender_hint: str | None = None
) -> tuple[str, bytes]:
    """(sender name, signed bytes) or InvalidSignature. Every allowed sender's secrets are
    tried; ``sender_hint`` (the ``X-AML-Sender`` header) narrows that to one sender."""
    split = split_signature(body)
    if split is None:
        raise InvalidSignature("the body must end with &hmac=<HMAC-SHA256 of what precedes it>")
    signed, signature = split
    for sender in policy.senders:
        if channel not in sender.channels:
            continue
        if sender_hint is not None and sender.name != sender_hint:
            continue
        if verify_signature(signed, signature, sender.secrets):
            return sender.name, signed
    raise InvalidSignature("the signature does not verify with any sender's secret")


@dataclass(frozen=True, slots=True)
class _Parsed:
    message: AmlMessage
    number: str | None
    sent_at: datetime


def _require(result: AmlResult) -> AmlMessage:
    if result.message is None:
        details = [{"field": result.field}] if result.field else []
        raise MalformedAml(result.reason or "malformed AML message", details=details)
    return result.message


def _timestamp(fields: Mapping[str, str], *names: str) -> datetime | None:
    for name in names:
        value = fields.get(name)
        if value:
            parsed = epoch_to_datetime(value)
            if parsed is None:
                raise MalformedAml(
                    f"{name} is not a Unix time in milliseconds", details=[{"field": name}]
                )
            return parsed
    return None


def parse_signed(channel: str, signed: bytes) -> _Parsed:
    """The AML message in a verified body, or MalformedAml saying what is wrong.

    HTTPS: the AML/ELS form; the freshness time is ``timestamp`` (the relay's), else ``time``
    (call start), else ``location_time``. SMS gateway: ``number`` (the SMS originator),
    ``text`` (an AML text SMS) or ``data`` (a data SMS's user data, base64; ``udhi=1`` when it
    starts with a user data header) and ``timestamp`` (when the SMSC received it, Unix ms).
    """
    fields, reason = parse_form(signed)
    if fields is None:
        raise MalformedAml(reason or "not a form-encoded body")
    if channel == "https":
        message = _require(parse_aml_https(fields))
        sent_at = _timestamp(fields, "timestamp", "time", "location_time")
        number = message.number
    else:
        number = (fields.get("number") or "").strip() or None
        if number is None:
            raise MalformedAml("the SMS originator is missing", details=[{"field": "number"}])
        if fields.get("text"):
            sms_text = fields["text"]
        elif fields.get("data"):
            udhi = {"1": True, "0": False}.get(fields.get("udhi", ""))
            decoded = decode_data_sms(fields["data"], udhi=udhi)
            if decoded is None:
                raise MalformedAml(
                    "data does not decode to an AML message", details=[{"field": "data"}]
                )
            sms_text = decoded
        else:
            raise MalformedAml("give the SMS as text or data", details=[{"field": "text"}])
        message = _require(parse_aml_sms(sms_text))
        sent_at = _timestamp(fields, "timestamp")
    if sent_at is None:
        raise MalformedAml(
            "no timestamp to check freshness against", details=[{"field": "timestamp"}]
        )
    return _Parsed(message, number, sent_at)


# -- matching ---------------------------------------------------------------------------------


async def _lock_number(session: AsyncSession, e164: str) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"siaga112.aml:{e164}"},
    )


def _calls_for(
    e164: str, at: datetime, policy: AmlPolicy, now: datetime
) -> Select[uuid.UUID, int | None]:
    return (
        select(Call.id, Call.incident_id)
        .where(
            call_matches(e164),
            Call.offered_at <= at + policy.match_before,
            Call.offered_at >= at - MAX_CALL_SPAN,
            func.coalesce(Call.ended_at, now) >= at - policy.match_after_end,
        )
        .order_by(func.abs(func.extract("epoch", Call.offered_at - at)), Call.id)
        .limit(1)
    )


def _reference_time(channel: str, message: AmlMessage, sent_at: datetime) -> datetime:
    """The time a message is matched on (module docstring): for SMS when the SMSC received
    it; for HTTPS the call start, else the fix time, else the relay's timestamp."""
    if channel == "sms":
        return sent_at
    return message.call_started_at or message.observed_at or sent_at


async def _attach(
    session: AsyncSession,
    row: AmlRow,
    *,
    call_id: uuid.UUID,
    incident_id: int | None,
    actor: Actor,
    request_id: str | None,
) -> None:
    parsed = row.parsed
    location_id = None
    if parsed.get("lat") is not None and parsed.get("lon") is not None:
        observed = parsed.get("observed_at")
        location = await add_location(
            session=session,
            call_id=call_id,
            incident_id=incident_id,
            source=_SOURCES[row.channel],
            lat=float(parsed["lat"]),
            lon=float(parsed["lon"]),
            radius_m=float(parsed["radius_m"]) if parsed.get("radius_m") is not None else None,
            confidence=parsed.get("confidence"),
            method=parsed.get("method"),
            observed_at=datetime.fromisoformat(observed) if observed else row.reference_at,
            raw={"aml_message_id": str(row.id), "sender": row.sender, "aml": parsed},
            address=None,
            actor=actor,
            request_id=request_id,
        )
        location_id = location.id
        incident_id = location.incident_id
    row.status = "matched"
    row.call_id = call_id
    row.incident_id = incident_id
    row.location_id = location_id
    row.matched_at = datetime.now(UTC)
    await session.flush()


async def receive_aml(
    *,
    session: AsyncSession,
    policy: AmlPolicy,
    channel: str,
    body: bytes,
    sender_hint: str | None = None,
    now: datetime | None = None,
    request_id: str | None = None,
) -> AmlReceipt:
    """Verify, parse, store and match one AML message; the caller commits. Raises
    InvalidSignature, MalformedAml or Replayed, having written nothing."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown AML channel {channel!r}")
    now = now or datetime.now(UTC)
    sender, signed = authenticate(
        policy=policy, channel=channel, body=body, sender_hint=sender_hint
    )
    parsed = parse_signed(channel, signed)
    window = int(policy.replay_window.total_seconds())
    if parsed.sent_at - now > policy.replay_window:
        raise Replayed(
            f"signed at {parsed.sent_at.isoformat()}, more than {window} s in the future "
            "(the sender's clock?)",
            details=[{"field": "timestamp"}],
        )
    late = now - parsed.sent_at > policy.replay_window
    if late and channel != "sms":
        raise Replayed(
            f"signed at {parsed.sent_at.isoformat()}, outside the replay window of {window} s",
            details=[{"field": "timestamp"}],
        )
    digest = hashlib.sha256(channel.encode() + b"\n" + signed).hexdigest()
    e164 = normalise_indonesian_number(parsed.number) if parsed.number else None
    if e164 is not None:
        await _lock_number(session, e164)
    reference_at = _reference_time(channel, parsed.message, parsed.sent_at)
    row_id = await session.scalar(
        insert(AmlRow)
        .values(
            id=uuid.uuid4(),
            channel=channel,
            sender=sender,
            number=(parsed.number or "")[:64] or None,
            number_e164=e164,
            payload=signed.decode("utf-8", errors="replace"),
            parsed=parsed.message.as_dict(),
            digest=digest,
            observed_at=parsed.message.observed_at,
            reference_at=reference_at,
            status="unmatched",
            late=late,
        )
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(AmlRow.id)
    )
    if row_id is None:
        raise Replayed("this message was received before")
    row = await session.get(AmlRow, row_id)
    assert row is not None
    if e164 is not None:
        found = (await session.execute(_calls_for(e164, reference_at, policy, now))).first()
        if found is not None:
            await _attach(
                session,
                row,
                call_id=found.id,
                incident_id=found.incident_id,
                actor=SYSTEM_AML,
                request_id=request_id,
            )
    log.info(
        "aml %s from %s: %s%s%s",
        channel,
        sender,
        row.status,
        f" to call {row.call_id}" if row.call_id else "",
        f" (late: received {parsed.sent_at.isoformat()})" if late else "",
    )
    return AmlReceipt(row.id, row.status, row.call_id, row.incident_id, row.location_id, late)


async def attach_pending_aml(
    *,
    session: AsyncSession,
    call_id: uuid.UUID,
    incident_id: int | None,
    number: str | None,
    offered_at: datetime,
    match_before: timedelta = DEFAULT_MATCH_BEFORE,
    match_after_end: timedelta = DEFAULT_MATCH_AFTER_END,
) -> int:
    """Attach the unmatched AML messages of ``number`` that belong to a call just recorded
    (messages that came before the call's row); returns how many. The caller commits.

    Call it after the call's row is committed, with the caller's number (the asserted one
    when there is one: that is what the handset's own number is likely to equal)."""
    e164 = normalise_indonesian_number(number) if number else None
    if e164 is None:
        return 0
    await _lock_number(session, e164)
    rows = (
        await session.scalars(
            select(AmlRow)
            .where(
                AmlRow.status == "unmatched",
                AmlRow.number_e164 == e164,
                AmlRow.reference_at >= offered_at - match_before,
                AmlRow.reference_at <= offered_at + MAX_CALL_SPAN + match_after_end,
            )
            .order_by(AmlRow.reference_at)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for row in rows:
        await _attach(
            session,
            row,
            call_id=call_id,
            incident_id=incident_id,
            actor=SYSTEM_AML,
            request_id=None,
        )
    return len(rows)


async def numbers_with_unmatched_aml(*, session: AsyncSession, since: datetime) -> frozenset[str]:
    """The E.164 numbers that have an unmatched AML message received since ``since``: a sweep
    asks once, so that a call whose number has none skips ``attach_pending_aml`` (its advisory
    lock and query). A message stored after this read, for a call derived in the same sweep,
    is the race ``rematch_unmatched`` is there for: the next sweep attaches it."""
    rows = await session.scalars(
        select(AmlRow.number_e164)
        .where(AmlRow.status == "unmatched", AmlRow.reference_at >= since)
        .distinct()
    )
    return frozenset(n for n in rows if n)


def may_have_pending_aml(number: str | None, pending: frozenset[str] | None) -> bool:
    """Whether ``attach_pending_aml`` can find anything for ``number`` (always, without the
    sweep's ``pending`` numbers)."""
    if number is None:
        return False
    if pending is None:
        return True
    e164 = normalise_indonesian_number(number)
    return e164 is not None and e164 in pending


async def rematch_unmatched(
    *, session: AsyncSession, policy: AmlPolicy, since: datetime, limit: int = 200
) -> int:
    """Try the unmatched messages received since ``since`` again (a sweep for messages whose
    call was recorded while they were being stored); returns how many matched. Caller commits."""
    now = datetime.now(UTC)
    rows = (
        await session.scalars(
            select(AmlRow)
            .where(
                AmlRow.status == "unmatched",
                AmlRow.number_e164.is_not(None),
                AmlRow.received_at >= since,
            )
            .order_by(AmlRow.received_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    matched = 0
    for row in rows:
        assert row.number_e164 is not None
        found = (
            await session.execute(_calls_for(row.number_e164, row.reference_at, policy, now))
        ).first()
        if found is not None:
            await _attach(
                session,
                row,
                call_id=found.id,
                incident_id=found.incident_id,
                actor=SYSTEM_AML,
                request_id=None,
            )
            matched += 1
    return matched


async def list_unmatched(
    *,
    session: AsyncSession,
    actor: Actor,
    limit: int,
    since: datetime | None,
    request_id: str | None,
) -> list[AmlRow]:
    """Unmatched AML messages, newest first. They hold caller locations: the read is audited."""
    stmt = select(AmlRow).where(AmlRow.status == "unmatched")
    if since is not None:
        stmt = stmt.where(AmlRow.received_at >= since)
    rows = list(
        (await session.scalars(stmt.order_by(AmlRow.received_at.desc()).limit(limit))).all()
    )
    # Audited also when the list is empty: every read of caller location is on record.
    await record_audit(
        session=session,
        actor=actor,
        action="aml.read_unmatched",
        entity_type="aml_message",
        entity_id="unmatched",
        before=None,
        after={"messages": len(rows)},
        request_id=request_id,
    )
    return rows


__all__ = [
    "SYSTEM_AML",
    "AmlPolicy",
    "AmlReceipt",
    "AmlSender",
    "attach_pending_aml",
    "authenticate",
    "list_unmatched",
    "parse_signed",
    "receive_aml",
    "rematch_unmatched",
]
