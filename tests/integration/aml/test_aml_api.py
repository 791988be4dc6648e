"""AML receivers against PostgreSQL: signed messages matched to their call by number and time
(before the call's row exists, during it, after it ended), unmatched ones kept and listed, and
bad signatures, replays and malformed messages refused with nothing stored."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import siaga112.locations.worker as worker_module
from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from siaga112.config import AmlSenderSettings, Settings
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.locations.aml_models import AmlMessage
from siaga112.locations.aml_service import (
    AmlPolicy,
    attach_pending_aml,
    may_have_pending_aml,
    numbers_with_unmatched_aml,
    rematch_unmatched,
)
from siaga112.locations.models import Location
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics
from tests.conftest import auth

Sessions = async_sessionmaker[AsyncSession]
RELAY_SECRET = "relay-secret-for-tests"
GATEWAY_SECRET = "sms-gateway-secret-for-tests"


@pytest.fixture
def aml_settings(settings: Settings) -> Settings:
    senders = {
        "relay": AmlSenderSettings(secrets=[SecretStr("old-secret"), SecretStr(RELAY_SECRET)]),
        "smsgw": AmlSenderSettings(secrets=[SecretStr(GATEWAY_SECRET)], channels=["sms"]),
    }
    locations = settings.locations.model_copy(update={"aml_senders": senders})
    return settings.model_copy(update={"locations": locations})


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def aml_client(
    aml_settings: Settings, engine: AsyncEngine, sessionmaker: Sessions, metrics: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(aml_settings, engine=engine, sessionmaker=sessionmaker, metrics=metrics)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://siaga112.test") as c:
        yield c


def ms(at: datetime) -> str:
    return str(int(at.timestamp() * 1000))


def signed(fields: list[tuple[str, str]], secret: str = RELAY_SECRET) -> bytes:
    body = urllib.parse.urlencode(fields).encode()
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body + b"&hmac=" + mac.encode()


def https_fields(number: str, *, at: datetime | None = None, **extra: str) -> list[tuple[str, str]]:
    at = at or datetime.now(UTC)
    fields = {
        "v": "1",
        "emergency_number": "112",
        "source": "call",
        "time": ms(at),
        "location_latitude": "-6.28211",
        "location_longitude": "106.97432",
        "location_time": ms(at + timedelta(seconds=3)),
        "location_accuracy": "12",
        "location_confidence": "0.68",
        "location_source": "gps",
        "device_number": number,
        "device_imei": "355458061005220",
        "cell_network_mcc": "510",
        "cell_network_mnc": "10",
    } | extra
    return list(fields.items())


def sms_text(at: datetime, lat: str = "-6.91474", lon: str = "+107.60981") -> str:
    body = (
        f'A"ML=1;lt={lat};lg={lon};rd=20;top={at:%Y%m%d%H%M%S};lc=68;pm=G;'
        "si=510100000000000;ei=355458061005220;mcc=510;mnc=10"
    )
    for digits in (2, 3):
        text = f"{body};ml={len(body) + 4 + digits}"
        if len(text) == int(text.rsplit("=", 1)[1]):
            return text
    raise AssertionError


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def new_number() -> str:
    return f"+62812{uuid.uuid4().int % 10**7:07d}"


async def add_call(
    sessionmaker: Sessions,
    *,
    caller_number: str | None,
    caller_e164: str | None,
    offered_at: datetime,
    ended_at: datetime | None = None,
    asserted_number: str | None = None,
) -> tuple[uuid.UUID, int]:
    uid = f"{offered_at.timestamp():.0f}.{uuid.uuid4().int % 10**6}"
    async with sessionmaker() as session:
        incident = Incident(
            status="new", channel="call", priority=3, origin_linkedid=uid, created_by="tests"
        )
        session.add(incident)
        await session.flush()
        call = Call(
            uniqueid=uid,
            linkedid=uid,
            caller_number=caller_number,
            caller_e164=caller_e164,
            asserted_number=asserted_number,
            caller_id_available=caller_number is not None,
            state="ended" if ended_at else "answered",
            source="agi",
            offered_at=offered_at,
            ended_at=ended_at,
            incident_id=incident.id,
        )
        session.add(call)
        await session.commit()
        return call.id, incident.id


async def counts(sessionmaker: Sessions) -> tuple[int, int, int, int]:
    async with sessionmaker() as session:
        return (
            await session.scalar(select(func.count()).select_from(AmlMessage)) or 0,
            await session.scalar(select(func.count()).select_from(Location)) or 0,
            await session.scalar(select(func.count()).select_from(IncidentEvent)) or 0,
            await session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


async def locations_of(sessionmaker: Sessions, call_id: uuid.UUID) -> list[Location]:
    async with sessionmaker() as session:
        return list(
            (await session.scalars(select(Location).where(Location.call_id == call_id))).all()
        )


# -- matched ----------------------------------------------------------------------------------


async def test_https_message_during_the_call_becomes_its_location(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions, metrics: Metrics
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    call_id, incident_id = await add_call(
        sessionmaker, caller_number="0" + number[3:], caller_e164=number, offered_at=now
    )
    r = await aml_client.post(
        "/aml/v1/https",
        content=signed(https_fields(number, at=now + timedelta(seconds=2))),
        headers=FORM,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "matched"
    [loc] = await locations_of(sessionmaker, call_id)
    assert (loc.source, loc.incident_id) == ("aml_https", incident_id)
    assert (loc.lat, loc.lon, loc.radius_m, loc.confidence, loc.method) == (
        -6.28211,
        106.97432,
        12.0,
        68,
        "gnss",
    )
    assert loc.raw is not None
    assert loc.raw["aml"]["imei"] == "355458061005220"
    async with sessionmaker() as session:
        kinds = (
            await session.scalars(
                select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id)
            )
        ).all()
        message = await session.get(AmlMessage, uuid.UUID(r.json()["id"]))
    assert "location_added" in kinds
    assert message is not None
    assert (message.status, message.call_id, message.incident_id, message.sender) == (
        "matched",
        call_id,
        incident_id,
        "relay",
    )
    assert metrics.counters["aml_https_matched"] == 1


async def test_sms_text_matches_a_number_stored_in_another_form(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    # The call knows the number only as the network asserted it, in national form.
    call_id, _ = await add_call(
        sessionmaker,
        caller_number=None,
        caller_e164=None,
        asserted_number="0" + number[3:],
        offered_at=now - timedelta(seconds=20),
    )
    fields = [
        ("number", number.lstrip("+")),  # 62812..., as many SMSCs deliver it
        ("text", sms_text(now)),
        ("timestamp", ms(now)),
    ]
    r = await aml_client.post("/aml/v1/sms", content=signed(fields, GATEWAY_SECRET), headers=FORM)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "matched"
    [loc] = await locations_of(sessionmaker, call_id)
    assert (loc.source, loc.lat, loc.lon, loc.radius_m, loc.method) == (
        "aml_sms",
        -6.91474,
        107.60981,
        20.0,
        "gnss",
    )
    assert loc.observed_at == now.replace(microsecond=0)


async def test_data_sms_base64_is_accepted(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    call_id, _ = await add_call(
        sessionmaker, caller_number=number, caller_e164=number, offered_at=now
    )
    udh = bytes([0x06, 0x05, 0x04, 0x1F, 0x90, 0x00, 0x00])
    data = base64.b64encode(udh + sms_text(now).encode()).decode()
    fields = [("number", "0" + number[3:]), ("data", data), ("udhi", "1"), ("timestamp", ms(now))]
    r = await aml_client.post("/aml/v1/sms", content=signed(fields), headers=FORM)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "matched"
    assert len(await locations_of(sessionmaker, call_id)) == 1


async def test_message_after_the_call_ended_matches_within_the_window_only(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    call_id, _ = await add_call(
        sessionmaker,
        caller_number=number,
        caller_e164=number,
        offered_at=now - timedelta(minutes=10),
        ended_at=now - timedelta(minutes=8),
    )
    r = await aml_client.post("/aml/v1/https", content=signed(https_fields(number)), headers=FORM)
    assert r.json()["status"] == "matched"
    assert len(await locations_of(sessionmaker, call_id)) == 1

    other = new_number()
    old_call, _ = await add_call(
        sessionmaker,
        caller_number=other,
        caller_e164=other,
        offered_at=now - timedelta(minutes=45),
        ended_at=now - timedelta(minutes=40),
    )
    r = await aml_client.post("/aml/v1/https", content=signed(https_fields(other)), headers=FORM)
    assert r.json()["status"] == "unmatched"
    assert await locations_of(sessionmaker, old_call) == []


async def test_message_before_the_call_is_kept_listed_then_attached(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions, keys: dict[Role, str]
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    r = await aml_client.post(
        "/aml/v1/https", content=signed(https_fields(number, at=now)), headers=FORM
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unmatched"
    message_id = r.json()["id"]

    listed = await aml_client.get("/v1/aml/unmatched", headers=auth(keys[Role.INTEGRATOR]))
    assert listed.status_code == 200
    [item] = [m for m in listed.json() if m["id"] == message_id]
    assert (item["number_e164"], item["channel"], item["lat"], item["radius_m"]) == (
        number,
        "https",
        -6.28211,
        12.0,
    )
    async with sessionmaker() as session:
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "aml.read_unmatched")
        )
    assert audited == 1

    # The call's row is written a moment later (the handset sent AML as it dialled).
    call_id, incident_id = await add_call(
        sessionmaker,
        caller_number="0" + number[3:],
        caller_e164=number,
        offered_at=now + timedelta(seconds=5),
    )
    async with sessionmaker() as session:
        attached = await attach_pending_aml(
            session=session,
            call_id=call_id,
            incident_id=incident_id,
            number="0" + number[3:],
            offered_at=now + timedelta(seconds=5),
        )
        await session.commit()
    assert attached == 1
    [loc] = await locations_of(sessionmaker, call_id)
    assert (loc.source, loc.incident_id) == ("aml_https", incident_id)

    listed = await aml_client.get("/v1/aml/unmatched", headers=auth(keys[Role.INTEGRATOR]))
    assert message_id not in {m["id"] for m in listed.json()}
    async with sessionmaker() as session:
        again = await attach_pending_aml(
            session=session,
            call_id=call_id,
            incident_id=incident_id,
            number=number,
            offered_at=now + timedelta(seconds=5),
        )
    assert again == 0


async def test_pending_message_of_another_time_is_not_attached(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    r = await aml_client.post(
        "/aml/v1/https", content=signed(https_fields(number, at=now)), headers=FORM
    )
    assert r.json()["status"] == "unmatched"
    later = now + timedelta(minutes=5)  # a later call from the same phone: not this message
    call_id, incident_id = await add_call(
        sessionmaker, caller_number=number, caller_e164=number, offered_at=later
    )
    async with sessionmaker() as session:
        assert (
            await attach_pending_aml(
                session=session,
                call_id=call_id,
                incident_id=incident_id,
                number=number,
                offered_at=later,
            )
            == 0
        )


async def test_rematch_sweep_attaches_a_message_whose_call_came_later(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions, aml_settings: Settings
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    r = await aml_client.post("/aml/v1/https", content=signed(https_fields(number)), headers=FORM)
    assert r.json()["status"] == "unmatched"
    call_id, _ = await add_call(
        sessionmaker, caller_number=number, caller_e164=number, offered_at=now
    )
    async with sessionmaker() as session:
        matched = await rematch_unmatched(
            session=session,
            policy=AmlPolicy.from_settings(aml_settings.locations),
            since=now - timedelta(minutes=1),
        )
        await session.commit()
    assert matched >= 1
    assert len(await locations_of(sessionmaker, call_id)) == 1


async def test_message_without_a_fix_matches_but_adds_no_location(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    call_id, _ = await add_call(
        sessionmaker, caller_number=number, caller_e164=number, offered_at=now
    )
    fields = [(k, v) for k, v in https_fields(number, at=now) if not k.startswith("location_")]
    r = await aml_client.post("/aml/v1/https", content=signed(fields), headers=FORM)
    assert r.json()["status"] == "matched"
    assert await locations_of(sessionmaker, call_id) == []


# -- refused, nothing stored ------------------------------------------------------------------


async def _refused(
    client: httpx.AsyncClient,
    sessionmaker: Sessions,
    path: str,
    body: bytes,
    status: int,
    code: str,
    headers: dict[str, str] | None = None,
) -> dict[str, object]:
    before = await counts(sessionmaker)
    r = await client.post(path, content=body, headers=headers or FORM)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.json()["message"]
    assert await counts(sessionmaker) == before, "a refused message changed stored data"
    result: dict[str, object] = r.json()
    return result


async def test_bad_signature_is_refused_and_nothing_stored(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions, metrics: Metrics
) -> None:
    number = new_number()
    await add_call(
        sessionmaker, caller_number=number, caller_e164=number, offered_at=datetime.now(UTC)
    )
    fields = https_fields(number)
    path = "/aml/v1/https"
    await _refused(
        aml_client, sessionmaker, path, signed(fields, "guessed"), 401, "invalid_signature"
    )
    tampered = signed(fields).replace(b"-6.28211", b"-6.28999")
    await _refused(aml_client, sessionmaker, path, tampered, 401, "invalid_signature")
    unsigned = urllib.parse.urlencode(fields).encode()
    await _refused(aml_client, sessionmaker, path, unsigned, 401, "invalid_signature")
    # The SMS gateway's secret is not valid for the HTTPS channel.
    only_sms = signed(fields, GATEWAY_SECRET)
    await _refused(aml_client, sessionmaker, path, only_sms, 401, "invalid_signature")
    # Naming a sender narrows the secrets tried to that sender's.
    await _refused(
        aml_client,
        sessionmaker,
        path,
        signed(fields),
        401,
        "invalid_signature",
        headers=FORM | {"X-AML-Sender": "smsgw"},
    )
    assert metrics.counters["aml_rejected_invalid_signature"] == 5
    r = await aml_client.post(
        path, content=signed(fields), headers=FORM | {"X-AML-Sender": "relay"}
    )
    assert r.status_code == 200
    assert "www-authenticate" not in r.headers


async def test_replayed_message_is_refused_and_nothing_stored(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    number = new_number()
    now = datetime.now(UTC)
    await add_call(sessionmaker, caller_number=number, caller_e164=number, offered_at=now)
    body = signed(https_fields(number, at=now))
    first = await aml_client.post("/aml/v1/https", content=body, headers=FORM)
    assert first.status_code == 200
    await _refused(aml_client, sessionmaker, "/aml/v1/https", body, 409, "replayed")
    sms = signed([("number", number), ("text", sms_text(now)), ("timestamp", ms(now))])
    assert (await aml_client.post("/aml/v1/sms", content=sms, headers=FORM)).status_code == 200
    await _refused(aml_client, sessionmaker, "/aml/v1/sms", sms, 409, "replayed")


async def test_https_signed_outside_the_window_is_refused_as_replayed(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    body = signed(https_fields(new_number(), at=old))
    error = await _refused(aml_client, sessionmaker, "/aml/v1/https", body, 409, "replayed")
    assert "window" in str(error["message"])


async def test_late_sms_is_kept_marked_late_and_a_copy_of_it_is_still_refused(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions, metrics: Metrics
) -> None:
    old = datetime.now(UTC) - timedelta(hours=2)
    number = new_number()
    sms = signed([("number", number), ("text", sms_text(old)), ("timestamp", ms(old))])
    r = await aml_client.post("/aml/v1/sms", content=sms, headers=FORM)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["late"]) == ("unmatched", True)
    async with sessionmaker() as session:
        row = await session.get(AmlMessage, uuid.UUID(r.json()["id"]))
    assert row is not None
    assert (row.late, row.number_e164) == (True, number)
    assert abs(row.reference_at - old) < timedelta(milliseconds=2), "matched on receive time"
    assert metrics.counters["aml_sms_late"] == 1
    await _refused(aml_client, sessionmaker, "/aml/v1/sms", sms, 409, "replayed")


async def test_message_signed_in_the_future_is_refused(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    ahead = datetime.now(UTC) + timedelta(hours=1)
    sms = signed([("number", new_number()), ("text", sms_text(ahead)), ("timestamp", ms(ahead))])
    error = await _refused(aml_client, sessionmaker, "/aml/v1/sms", sms, 409, "replayed")
    assert "future" in str(error["message"])


async def test_sms_is_matched_on_its_receive_time_not_on_a_stale_fix_time(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    """The handset's last fix is 40 minutes old (or its clock is wrong); the SMS itself came
    with the call. It belongs to the call, and the location keeps the fix's own time."""
    number = new_number()
    now = datetime.now(UTC)
    call_id, _ = await add_call(
        sessionmaker,
        caller_number=number,
        caller_e164=number,
        offered_at=now - timedelta(seconds=5),
    )
    fix = now - timedelta(minutes=40)
    fields = [("number", number), ("text", sms_text(fix)), ("timestamp", ms(now))]
    r = await aml_client.post("/aml/v1/sms", content=signed(fields, GATEWAY_SECRET), headers=FORM)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["late"]) == ("matched", False)
    [loc] = await locations_of(sessionmaker, call_id)
    assert loc.observed_at == fix.replace(microsecond=0)


async def test_late_sms_received_during_an_earlier_call_matches_that_call(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    """The SMSC got the SMS during the call 20 minutes ago; the gateway forwards it only now.
    It is accepted (late) and attached to that call, by the SMSC's receive time."""
    number = new_number()
    now = datetime.now(UTC)
    call_id, incident_id = await add_call(
        sessionmaker,
        caller_number=number,
        caller_e164=number,
        offered_at=now - timedelta(minutes=20),
        ended_at=now - timedelta(minutes=17),
    )
    received = now - timedelta(minutes=20) + timedelta(seconds=8)
    fields = [("number", number), ("text", sms_text(received)), ("timestamp", ms(received))]
    r = await aml_client.post("/aml/v1/sms", content=signed(fields, GATEWAY_SECRET), headers=FORM)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["late"]) == ("matched", True)
    [loc] = await locations_of(sessionmaker, call_id)
    assert (loc.source, loc.incident_id) == ("aml_sms", incident_id)


@pytest.mark.parametrize(
    ("path", "fields", "field"),
    [
        ("/aml/v1/https", {"location_latitude": "-96.1"}, "location_latitude"),
        ("/aml/v1/https", {"location_accuracy": "far"}, "location_accuracy"),
        ("/aml/v1/https", {"time": "", "location_time": "", "timestamp": ""}, "timestamp"),
    ],
)
async def test_malformed_https_is_refused_and_nothing_stored(
    aml_client: httpx.AsyncClient,
    sessionmaker: Sessions,
    path: str,
    fields: dict[str, str],
    field: str,
) -> None:
    body = signed(list((dict(https_fields(new_number())) | fields).items()))
    error = await _refused(aml_client, sessionmaker, path, body, 422, "malformed_aml")
    assert error["details"] == [{"field": field}]


async def test_malformed_sms_is_refused_and_nothing_stored(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    now = datetime.now(UTC)
    text = sms_text(now)
    altered = text.replace("rd=20", "rd=2")  # ml no longer matches: truncated or altered
    cases = [
        [("number", new_number()), ("text", altered), ("timestamp", ms(now))],
        [("number", new_number()), ("text", "Tolong! Kebakaran"), ("timestamp", ms(now))],
        [("number", new_number()), ("data", "bm90IEFNTA=="), ("timestamp", ms(now))],
        [("text", text), ("timestamp", ms(now))],  # no originator
        [("number", new_number()), ("text", text)],  # no timestamp
    ]
    for fields in cases:
        await _refused(
            aml_client, sessionmaker, "/aml/v1/sms", signed(fields), 422, "malformed_aml"
        )
    await _refused(
        aml_client,
        sessionmaker,
        "/aml/v1/sms",
        signed(cases[0]),
        422,
        "malformed_aml",
        headers={"Content-Type": "application/json"},
    )


async def test_unmatched_list_needs_a_key(aml_client: httpx.AsyncClient) -> None:
    r = await aml_client.get("/v1/aml/unmatched")
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"


async def test_the_location_sweep_looks_up_aml_only_for_numbers_that_have_some(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions, settings: Settings, tmp_path: Path
) -> None:
    """The worker's sweep reads once which numbers have unmatched messages: a call of another
    number is located without the AML look-up, and the message is attached to its call all
    the same."""
    with_message, without = new_number(), new_number()
    now = datetime.now(UTC)
    r = await aml_client.post(
        "/aml/v1/https", content=signed(https_fields(with_message, at=now)), headers=FORM
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unmatched"
    async with sessionmaker() as session:
        pending = await numbers_with_unmatched_aml(
            session=session, since=now - timedelta(minutes=1)
        )
    assert with_message in pending
    assert without not in pending
    assert may_have_pending_aml("0" + with_message[3:], pending)
    assert not may_have_pending_aml("0" + without[3:], pending)
    assert may_have_pending_aml("0" + without[3:], None)  # inline: always looked up
    looked_up: list[str | None] = []
    real_attach = attach_pending_aml

    async def counting_attach(**kwargs: Any) -> int:
        looked_up.append(kwargs["number"])
        return await real_attach(**kwargs)

    worker = LocationWorker(
        settings=settings.model_copy(update={"state_dir": tmp_path}),
        sessionmaker=sessionmaker,
        metrics=Metrics(),
    )
    # One call per sweep: the test's sessions share one connection (no concurrent derivations).
    calls = {}
    for number in (without, with_message):
        call_id, _ = await add_call(
            sessionmaker,
            caller_number="0" + number[3:],
            caller_e164=number,
            offered_at=now - timedelta(seconds=1),  # due for the sweep
        )
        async with sessionmaker() as session:  # something to locate: the sweep's calls
            call = await session.get(Call, call_id)
            assert call is not None
            call.pani_raw = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"
            await session.commit()
        calls[number] = call_id
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(worker_module, "attach_pending_aml", counting_attach)
            await worker.sweep(grace=timedelta(0))
    assert "0" + without[3:] not in looked_up
    async with sessionmaker() as session:
        message = await session.scalar(
            select(AmlMessage).where(AmlMessage.number_e164 == with_message)
        )
        assert message is not None
        assert (message.status, message.call_id) == ("matched", calls[with_message])
        for call_id in calls.values():
            call = await session.get(Call, call_id)
            assert call is not None
            assert call.locations_done_at is not None


async def test_a_call_with_aml_waiting_is_not_taken_by_the_sweeps_set_based_path(
    aml_client: httpx.AsyncClient, sessionmaker: Sessions, settings: Settings, tmp_path: Path
) -> None:
    """Calls whose derivation is their cell alone are derived together; a call whose number
    has a message waiting is not one of them: its message is attached to it by its own
    derivation (the rematch, which would also find it, is left out here)."""
    with_message, without = new_number(), new_number()
    now = datetime.now(UTC)
    r = await aml_client.post(
        "/aml/v1/https", content=signed(https_fields(with_message, at=now)), headers=FORM
    )
    assert r.json()["status"] == "unmatched"
    calls = {}
    for number in (without, with_message):
        call_id, _ = await add_call(
            sessionmaker,
            caller_number="0" + number[3:],
            caller_e164=number,
            offered_at=now - timedelta(seconds=1),
        )
        async with sessionmaker() as session:
            call = await session.get(Call, call_id)
            assert call is not None
            call.pani_raw = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"
            await session.commit()
        calls[number] = call_id

    async def no_rematch(**kwargs: Any) -> int:
        return 0

    worker = LocationWorker(
        settings=settings.model_copy(update={"state_dir": tmp_path}),
        sessionmaker=sessionmaker,
        metrics=Metrics(),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(worker_module, "rematch_unmatched", no_rematch)
        assert await worker.sweep(grace=timedelta(0)) == 2
    sources = {
        number: sorted(loc.source for loc in await locations_of(sessionmaker, call_id))
        for number, call_id in calls.items()
    }
    assert sources == {with_message: ["aml_https", "network_cell"], without: ["network_cell"]}
