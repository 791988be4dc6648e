"""The callback worklist and callbacks through the API with a fake call control: what is on the
list and with which status, claims that keep two operators off one caller, outcomes replayed
from real Asterisk transcripts, audit and timeline, and refusals that change nothing."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.callbacks import service
from siaga112.callbacks.legs import CALLBACK_ID_PREFIX
from siaga112.callbacks.models import Callback, CallbackAttempt
from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.errors import CallbackInProgress
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.metrics import Metrics
from siaga112.runtime.callback_tracking import CallbackTracker
from siaga112.telephony.ami_events import parse_event, split_transcript
from siaga112.telephony.callback_legs import fact_of
from tests.conftest import auth, operator_key
from tests.integration.api.test_operators import FakeControl

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ami"
# The attempt token in each captured transcript.
CAPTURED = {
    "callback-reached.txt": "37e28fc772554654850d41818c8855bf",
    "callback-no-answer.txt": "a13763d6d8cd458cb7f81c41704370a6",
    "callback-busy.txt": "04a9bb01700f4b0fbe3ba54a5503edab",
    "callback-operator-no-answer.txt": "0d7c15db832446ebbc4d03d7467cc56b",
}

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def control() -> FakeControl:
    return FakeControl()


@pytest.fixture
async def api(
    settings: Settings, engine: AsyncEngine, sessionmaker: Sessions, control: FakeControl
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker, call_control=control)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c


def new_number() -> str:
    return f"+62813{random.randrange(10**6, 10**7)}"


async def add_call(
    sessionmaker: Sessions,
    *,
    number: str | None,
    state: str = "abandoned",
    classification: str | None = None,
    minutes_ago: float = 5,
    answered: bool = False,
) -> Call:
    offered = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    uid = f"{offered.timestamp():.6f}.{uuid.uuid4().int % 10**6}"
    async with sessionmaker() as session:
        incident = Incident(
            status="new",
            channel="call",
            priority=3,
            caller_number=number,
            classification=classification,
            origin_linkedid=uid,
            created_by="tests",
        )
        session.add(incident)
        await session.flush()
        call = Call(
            uniqueid=uid,
            linkedid=uid,
            caller_number=number,
            caller_e164=number,
            caller_id_available=number is not None,
            state=state,
            source="agi",
            queue="emergency",
            outcome="abandoned" if state == "abandoned" else "answered" if answered else None,
            offered_at=offered,
            enqueued_at=offered + timedelta(seconds=1),
            answered_at=offered + timedelta(seconds=5) if answered else None,
            ended_at=offered + timedelta(seconds=20),
            incident_id=incident.id,
        )
        session.add(call)
        await session.commit()
        return call


async def worklist(api: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    r = await api.get("/v1/callbacks", headers=auth(key), params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def item_of(body: dict[str, Any], call: Call) -> dict[str, Any]:
    found: list[dict[str, Any]] = [i for i in body["items"] if i["call_id"] == str(call.id)]
    assert len(found) == 1, found
    return found[0]


async def start(
    api: httpx.AsyncClient, key: str, call: Call, extension: str = "6001", **extra: Any
) -> httpx.Response:
    return await api.post(
        f"/v1/callbacks/{call.id}/call",
        headers=auth(key),
        json={"operator_extension": extension, **extra},
    )


async def replay(sessionmaker: Sessions, transcript: str, channel_id: str) -> None:
    """Feeds a captured transcript, its attempt renamed to ``channel_id``, to the writer the
    telephony runtime uses."""
    text = (FIXTURES / transcript).read_text()
    text = text.replace(CALLBACK_ID_PREFIX + CAPTURED[transcript], channel_id)
    messages = split_transcript(text)
    # As if it happened now: the transcript's times shifted, their spacing kept.
    stamps = [float(str(m["Timestamp"])) for m in messages if "Timestamp" in m]
    shift = datetime.now(UTC).timestamp() - min(stamps)
    for m in messages:
        if "Timestamp" in m:
            m["Timestamp"] = f"{float(str(m['Timestamp'])) + shift:.6f}"
    tracker = CallbackTracker(sessionmaker=sessionmaker, metrics=Metrics())
    await tracker.start()
    received = datetime.now(UTC)
    for message in messages:
        event = parse_event(message, received_at=received)
        if event is not None:
            tracker.feed(event)
    await tracker.stop()


async def open_attempt(sessionmaker: Sessions, call: Call) -> CallbackAttempt:
    async with sessionmaker() as session:
        attempt = await session.scalar(
            select(CallbackAttempt)
            .where(CallbackAttempt.call_id == call.id)
            .order_by(CallbackAttempt.id.desc())
            .limit(1)
        )
    assert attempt is not None
    return attempt


async def timeline(sessionmaker: Sessions, call: Call, kind: str) -> list[IncidentEvent]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == call.incident_id, IncidentEvent.kind == kind)
            .order_by(IncidentEvent.id)
        )
        return list(rows.all())


async def audits(sessionmaker: Sessions, call: Call, action: str) -> list[AuditEvent]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_id == str(call.id), AuditEvent.action == action)
            .order_by(AuditEvent.id)
        )
        return list(rows.all())


# --- the worklist ------------------------------------------------------------------------------


async def test_worklist_lists_abandoned_and_silent_calls_with_a_number_newest_first(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    abandoned = await add_call(sessionmaker, number=new_number(), minutes_ago=30)
    silent = await add_call(
        sessionmaker, number=new_number(), state="ended", classification="ghost", minutes_ago=20
    )
    answered = await add_call(sessionmaker, number=new_number(), state="ended", answered=True)
    prank = await add_call(sessionmaker, number=new_number(), state="ended", classification="prank")
    await add_call(sessionmaker, number=None, minutes_ago=10)
    await add_call(sessionmaker, number=None, state="ended", classification="ghost")

    body = await worklist(api, keys[Role.INTEGRATOR])
    ids = [i["call_id"] for i in body["items"]]
    assert ids == [str(silent.id), str(abandoned.id)]
    assert str(answered.id) not in ids
    assert str(prank.id) not in ids
    assert body["anonymous"] == 2
    assert body["next_cursor"] is None
    first = item_of(body, abandoned)
    assert (first["reason"], first["status"], first["attempts"]) == ("abandoned", "pending", 0)
    assert first["number"] == abandoned.caller_number
    assert first["incident_id"] == abandoned.incident_id
    assert first["waited_s"] == 19.0
    assert item_of(body, silent)["reason"] == "silent"

    only_silent = await worklist(api, keys[Role.INTEGRATOR], reason="silent")
    assert [i["call_id"] for i in only_silent["items"]] == [str(silent.id)]
    assert only_silent["anonymous"] == 1
    recent = await worklist(
        api,
        keys[Role.INTEGRATOR],
        offered_from=(datetime.now(UTC) - timedelta(minutes=25)).isoformat(),
    )
    assert [i["call_id"] for i in recent["items"]] == [str(silent.id)]


async def test_worklist_pages_with_a_keyset_cursor(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    calls = [await add_call(sessionmaker, number=new_number(), minutes_ago=m) for m in (3, 2, 1)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = await worklist(api, keys[Role.OPERATOR], **params)
        seen += [i["call_id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(c.id) for c in reversed(calls)]
    assert pages == 2
    r = await api.get(
        "/v1/callbacks", headers=auth(keys[Role.OPERATOR]), params={"cursor": "garbage"}
    )
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


async def test_a_later_answered_call_from_the_same_number_makes_the_callback_not_needed(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    number = new_number()
    earlier_answer = await add_call(
        sessionmaker, number=number, state="ended", answered=True, minutes_ago=60
    )
    missed = await add_call(sessionmaker, number=number, minutes_ago=30)
    other = await add_call(sessionmaker, number=new_number(), minutes_ago=30)
    body = await worklist(api, keys[Role.OPERATOR])
    assert item_of(body, missed)["status"] == "pending"  # an earlier answer does not count

    later = await add_call(sessionmaker, number=number, state="ended", answered=True, minutes_ago=5)
    body = await worklist(api, keys[Role.OPERATOR])
    item = item_of(body, missed)
    assert item["status"] == "not_needed"
    assert item["answered_later_call_id"] == str(later.id)
    assert item_of(body, other)["status"] == "pending"
    assert str(earlier_answer.id) not in [i["call_id"] for i in body["items"]]

    pending = await worklist(api, keys[Role.OPERATOR], status="pending")
    assert str(missed.id) not in [i["call_id"] for i in pending["items"]]
    assert str(other.id) in [i["call_id"] for i in pending["items"]]
    r = await start(api, keys[Role.OPERATOR], missed)
    assert (r.status_code, r.json()["code"]) == (409, "invalid_transition")


# --- calling back ------------------------------------------------------------------------------


async def test_call_back_originates_from_the_operator_phone_claims_and_is_audited(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions, control: FakeControl
) -> None:
    call = await add_call(sessionmaker, number="+6281234567001")
    r = await start(api, keys[Role.OPERATOR], call)
    assert r.status_code == 202, r.text
    started = r.json()
    assert (started["status"], started["dialled"]) == ("in_progress", "6281234567001")
    [sent] = control.originated
    assert (sent["endpoint"], sent["context"], sent["exten"]) == (
        "PJSIP/6001",
        "siaga112-callback",
        "6281234567001",
    )
    assert sent["channel_id"].startswith(CALLBACK_ID_PREFIX)
    assert "+6281234567001" in sent["caller_id"]
    assert sent["ring_s"] == 30
    assert sent["variables"]["SIAGA112_CALLBACK_RING_S"] == "45"
    assert sent["variables"]["SIAGA112_CALLBACK_CID"] == "112"

    item = item_of(await worklist(api, keys[Role.OPERATOR]), call)
    assert (item["status"], item["attempts"], item["operator_extension"]) == (
        "in_progress",
        1,
        "6001",
    )
    assert item["claimed_by"] == "key:test-operator"
    assert item["claim_expires_at"] is not None
    [audit] = await audits(sessionmaker, call, "callback.attempt")
    assert audit.before is not None
    assert audit.after is not None
    assert (audit.before["status"], audit.after["status"]) == ("pending", "in_progress")
    assert audit.actor == "key:test-operator"
    assert "acting_for_operator" not in audit.after, "its own phone"
    [event] = await timeline(sessionmaker, call, "callback_attempted")
    assert event.data["operator_extension"] == "6001"
    assert event.data["attempt_id"] == started["attempt_id"]


async def test_two_operators_never_call_one_caller_at_once(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions, control: FakeControl
) -> None:
    number = new_number()
    first = await add_call(sessionmaker, number=number, minutes_ago=10)
    again = await add_call(sessionmaker, number=number, minutes_ago=8)
    elsewhere = await add_call(sessionmaker, number=new_number())
    # For two operators' phones: a supervisor's key.
    key = keys[Role.SUPERVISOR]
    assert (await start(api, key, first, "6001")).status_code == 202
    [audit] = await audits(sessionmaker, first, "callback.attempt")
    assert audit.after is not None
    assert (audit.after["acting_for_operator"], audit.after["actor_role"]) == (
        "6001",
        "supervisor",
    )

    same_item = await start(api, key, first, "6002")
    assert (same_item.status_code, same_item.json()["code"]) == (409, "callback_in_progress")
    assert same_item.json()["details"][0]["operator_extension"] == "6001"
    same_number = await start(api, key, again, "6002")
    assert (same_number.status_code, same_number.json()["code"]) == (409, "callback_in_progress")
    busy_operator = await start(api, key, elsewhere, "6001")
    assert (busy_operator.status_code, busy_operator.json()["code"]) == (
        409,
        "callback_in_progress",
    )
    assert len(control.originated) == 1
    async with sessionmaker() as session:
        attempts = await session.scalar(select(func.count()).select_from(CallbackAttempt))
    assert attempts == 1
    assert (await start(api, key, elsewhere, "6002")).status_code == 202


@pytest.mark.parametrize(
    ("transcript", "outcome", "status"),
    [
        ("callback-reached.txt", "reached", "reached"),
        ("callback-no-answer.txt", "no_answer", "no_answer"),
        ("callback-busy.txt", "busy", "busy"),
        # The operator's phone never answered: the caller was not dialled, still pending.
        ("callback-operator-no-answer.txt", "operator_unavailable", "pending"),
    ],
)
async def test_outcome_from_asterisk_events_updates_worklist_audit_and_timeline(
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: Sessions,
    transcript: str,
    outcome: str,
    status: str,
) -> None:
    call = await add_call(sessionmaker, number=new_number())
    assert (await start(api, keys[Role.OPERATOR], call)).status_code == 202
    attempt = await open_attempt(sessionmaker, call)
    await replay(sessionmaker, transcript, attempt.channel_id)

    r = await api.get(f"/v1/callbacks/{call.id}", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 200, r.text
    detail = r.json()
    assert (detail["status"], detail["last_outcome"], detail["attempts"]) == (status, outcome, 1)
    assert detail["operator_extension"] is None
    assert detail["claimed_by"] is None
    [row] = detail["attempt_list"]
    assert row["outcome"] == outcome
    assert row["operator_extension"] == "6001"
    assert row["decided_at"] is not None
    if outcome == "reached":
        assert row["dial_status"] == "ANSWER"
        assert detail["reached_at"] == row["dial_ended_at"]
        assert row["ended_at"] is not None  # the Hangup after the decision is kept too
    [audit] = await audits(sessionmaker, call, "callback.result")
    assert audit.actor == "system:ami"
    assert audit.after is not None
    assert audit.after["outcome"] == outcome
    [event] = await timeline(sessionmaker, call, "callback_result")
    assert (event.data["outcome"], event.data["status"]) == (outcome, status)

    # The claim is gone: the next attempt may start at once.
    again = await start(api, keys[Role.OPERATOR], call, force=True)
    assert again.status_code == 202, again.text


async def test_a_reached_callback_settles_earlier_missed_calls_of_that_number(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    number = new_number()
    older = await add_call(sessionmaker, number=number, minutes_ago=20)
    newest = await add_call(sessionmaker, number=number, minutes_ago=10)
    assert (await start(api, keys[Role.OPERATOR], newest)).status_code == 202
    await replay(
        sessionmaker, "callback-reached.txt", (await open_attempt(sessionmaker, newest)).channel_id
    )
    body = await worklist(api, keys[Role.OPERATOR])
    assert item_of(body, newest)["status"] == "reached"
    assert item_of(body, older)["status"] == "not_needed"
    # Reached is done: calling again needs force.
    r = await start(api, keys[Role.OPERATOR], newest)
    assert (r.status_code, r.json()["code"]) == (409, "invalid_transition")


async def test_replayed_events_decide_once(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    call = await add_call(sessionmaker, number=new_number())
    assert (await start(api, keys[Role.OPERATOR], call)).status_code == 202
    channel_id = (await open_attempt(sessionmaker, call)).channel_id
    await replay(sessionmaker, "callback-busy.txt", channel_id)
    await replay(sessionmaker, "callback-busy.txt", channel_id)
    assert len(await timeline(sessionmaker, call, "callback_result")) == 1
    assert len(await audits(sessionmaker, call, "callback.result")) == 1


async def test_events_of_unknown_attempts_change_nothing(sessionmaker: Sessions) -> None:
    text = (FIXTURES / "callback-reached.txt").read_text()
    facts = [
        f
        for f in (
            fact_of(e)
            for e in (parse_event(m, received_at=datetime.now(UTC)) for m in split_transcript(text))
            if e is not None
        )
        if f is not None
    ]
    async with sessionmaker() as session:
        assert [await service.record_leg_fact(session=session, fact=f) for f in facts] == [
            False
        ] * len(facts)


async def test_originate_refused_closes_the_attempt_and_keeps_the_status(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions, control: FakeControl
) -> None:
    call = await add_call(sessionmaker, number=new_number())
    control.fail = True
    r = await start(api, keys[Role.OPERATOR], call)
    assert (r.status_code, r.json()["code"]) == (503, "telephony_unavailable")
    attempt = await open_attempt(sessionmaker, call)
    assert attempt.outcome == "not_placed"
    item = item_of(await worklist(api, keys[Role.OPERATOR]), call)
    assert (item["status"], item["last_outcome"], item["operator_extension"]) == (
        "pending",
        "not_placed",
        None,
    )
    control.fail = False
    assert (await start(api, keys[Role.OPERATOR], call)).status_code == 202


async def test_attempt_without_outcome_is_closed_as_failed_when_its_time_is_up(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    call = await add_call(sessionmaker, number=new_number())
    r = await start(api, keys[Role.OPERATOR], call)
    expires = datetime.fromisoformat(r.json()["expires_at"])
    async with sessionmaker() as session:
        assert await service.expire_stale_attempts(session=session, now=expires) == 0
        closed = await service.expire_stale_attempts(
            session=session, now=expires + timedelta(seconds=1)
        )
        await session.commit()
    assert closed == 1
    item = item_of(await worklist(api, keys[Role.OPERATOR]), call)
    assert (item["status"], item["last_outcome"]) == ("failed", "failed")
    [audit] = await audits(sessionmaker, call, "callback.result")
    assert audit.actor == "system:callbacks"


async def test_refusals_store_nothing(
    settings: Settings,
    engine: AsyncEngine,
    api: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: Sessions,
    control: FakeControl,
) -> None:
    key = keys[Role.OPERATOR]
    anonymous = await add_call(sessionmaker, number=None)
    answered = await add_call(sessionmaker, number=new_number(), state="ended", answered=True)
    call = await add_call(sessionmaker, number=new_number())
    cases: list[tuple[httpx.Response, int, str]] = [
        (await start(api, key, anonymous), 422, "caller_id_unavailable"),
        (await start(api, key, answered), 404, "not_found"),
        (await start(api, keys[Role.SUPERVISOR], call, "9999"), 404, "not_found"),
        # An operator key rings only its own operator's phone.
        (await start(api, key, call, "6002"), 403, "not_own_operator"),
        (
            await start(api, await operator_key(sessionmaker, None), call),
            403,
            "operator_key_unbound",
        ),
        (await start(api, key, call, "60a1"), 422, "validation_error"),
        (await start(api, key, call, extra_field=1), 422, "validation_error"),
        (await start(api, keys[Role.INTEGRATOR], call), 403, "forbidden"),
    ]
    r = await api.post(f"/v1/callbacks/{uuid.uuid4()}/call", headers=auth(key), json={})
    cases.append((r, 422, "validation_error"))
    for response, code, name in cases:
        assert (response.status_code, response.json()["code"]) == (code, name), response.text
    # Without AMI in this process (serve --api-only).
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://siaga112.test"
    ) as no_ami:
        r = await start(no_ami, key, call)
        assert (r.status_code, r.json()["code"]) == (503, "telephony_unavailable")
    assert control.originated == []
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Callback)) == 0
        assert await session.scalar(select(func.count()).select_from(CallbackAttempt)) == 0
        assert (
            await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action.like("callback.%"))
            )
            == 0
        )


async def test_operator_dismisses_a_callback_with_a_note(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessions
) -> None:
    call = await add_call(sessionmaker, number=new_number())
    busy = await add_call(sessionmaker, number=new_number())
    key = keys[Role.OPERATOR]
    r = await api.post(
        f"/v1/callbacks/{call.id}/dismiss",
        headers=auth(key),
        json={"note": "Pelapor sudah dihubungi lewat WhatsApp"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["note"]) == (
        "not_needed",
        "Pelapor sudah dihubungi lewat WhatsApp",
    )
    [audit] = await audits(sessionmaker, call, "callback.dismiss")
    assert audit.before is not None
    assert audit.before["status"] == "pending"
    assert len(await timeline(sessionmaker, call, "callback_dismissed")) == 1

    assert (await start(api, key, busy)).status_code == 202
    r = await api.post(f"/v1/callbacks/{busy.id}/dismiss", headers=auth(key), json={"note": "x"})
    assert (r.status_code, r.json()["code"]) == (409, "callback_in_progress")
    r = await api.post(f"/v1/callbacks/{call.id}/dismiss", headers=auth(key), json={"note": ""})
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")


async def test_concurrent_claims_of_one_caller_let_exactly_one_through(
    engine: AsyncEngine, owner_engine: AsyncEngine, settings: Settings
) -> None:
    """Two operators press "call back" at the same moment, each in its own transaction."""
    committed = async_sessionmaker(engine, expire_on_commit=False)
    number = new_number()
    calls = [await add_call(committed, number=number, minutes_ago=m) for m in (9, 8)]
    policy = service.CallbackPolicy.from_settings(settings)

    async def press(call: Call, extension: str) -> str:
        async with committed() as session:
            try:
                await service.claim(
                    session=session,
                    call_id=call.id,
                    operator_extension=extension,
                    force=False,
                    policy=policy,
                    actor=system_actor(f"op{extension}"),
                    request_id=None,
                )
                await session.commit()
            except CallbackInProgress:
                return "refused"
            return "claimed"

    try:
        # No row yet; two rows of one number; one row that exists already.
        for first, second in ((calls[0], calls[0]), (calls[0], calls[1]), (calls[0], calls[0])):
            results = await asyncio.gather(press(first, "6001"), press(second, "6002"))
            assert sorted(results) == ["claimed", "refused"]
            async with committed() as session:
                assert (
                    await service.expire_stale_attempts(
                        session=session, now=datetime.now(UTC) + timedelta(hours=1)
                    )
                    == 1
                )
                await session.commit()
    finally:
        async with committed() as session:
            ids = [c.id for c in calls]
            await session.execute(delete(Callback).where(Callback.call_id.in_(ids)))
            await session.execute(delete(Call).where(Call.id.in_(ids)))
            await session.execute(
                delete(Incident).where(Incident.id.in_([c.incident_id for c in calls]))
            )
            await session.commit()
        # The audit trail is append-only for the service's role.
        async with owner_engine.begin() as conn:
            await conn.execute(
                delete(AuditEvent).where(AuditEvent.entity_id.in_([str(i) for i in ids]))
            )
