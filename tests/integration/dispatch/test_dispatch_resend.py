"""Resending a dispatch its agency has not acknowledged: a new webhook message (or, without a
webhook, the dispatch marked as resent on the agency's page), a timeline line and an audit row,
the resends counted; refused once acknowledged (409 dispatch_not_waiting), for a dispatch that
does not exist (404) and for roles that may not dispatch (403), changing nothing. The overdue
alert re-arms from the resend; the acknowledgement time still counts from the first send."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.dispatch.models import Dispatch, WebhookOutbox
from siaga112.dispatch.service import alert_unacknowledged
from siaga112.incidents.models import IncidentEvent
from tests.conftest import auth
from tests.integration.dispatch.conftest import make_key

SM = async_sessionmaker[AsyncSession]
HOOK = "https://damkar.example.invalid/hook"  # RFC 6761: accepted when set, never reached


async def _incident(client: httpx.AsyncClient, key: str, **fields: Any) -> int:
    body = {"channel": "walk_in", "category": "kebakaran", "address": "Jl. Ahmad Yani"} | fields
    r = await client.post("/v1/incidents", headers=auth(key), json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _dispatch(client: httpx.AsyncClient, key: str, incident: int, code: str) -> int:
    r = await client.post(
        f"/v1/incidents/{incident}/dispatches", headers=auth(key), json={"agencies": [code]}
    )
    assert r.status_code == 201, r.text
    return int(r.json()["items"][0]["id"])


async def _webhook(client: httpx.AsyncClient, keys: dict[Role, str], code: str) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    agency = next(
        a for a in (await client.get("/v1/agencies", headers=sup)).json() if a["code"] == code
    )
    r = await client.put(
        f"/v1/agencies/{agency['id']}/dispatch-settings", headers=sup, json={"webhook_url": HOOK}
    )
    assert r.status_code == 200, r.text


async def _outbox(sm: SM, dispatch_id: int) -> list[WebhookOutbox]:
    async with sm() as session:
        return list(
            (
                await session.scalars(
                    select(WebhookOutbox)
                    .where(WebhookOutbox.dispatch_id == dispatch_id)
                    .order_by(WebhookOutbox.id)
                )
            ).all()
        )


async def _counts(sm: SM) -> list[int]:
    async with sm() as session:
        return [
            int(await session.scalar(select(func.count()).select_from(m)) or 0)
            for m in (WebhookOutbox, IncidentEvent, AuditEvent)
        ]


async def test_resend_writes_a_new_message_a_timeline_line_and_an_audit_row(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    await _webhook(client, keys, "damkar")
    incident = await _incident(client, op, summary="Asap dari lantai dua")
    dispatch = await _dispatch(client, op, incident, "damkar")
    # What changed since the first send goes with the resend: the incident as it is now.
    r = await client.patch(
        f"/v1/incidents/{incident}",
        headers=auth(op),
        json={"summary": "Api membesar, dua orang terjebak", "landmark": "Seberang SDN 3"},
    )
    assert r.status_code == 200, r.text

    r = await client.post(f"/v1/dispatches/{dispatch}/resend", headers=auth(op))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["status"], out["resend_count"]) == ("sent", 1)
    assert out["last_resent_at"] is not None
    assert out["unack_alerted_at"] is None

    rows = await _outbox(sessionmaker, dispatch)
    assert [(x.event, x.idempotency_key) for x in rows] == [
        ("dispatch.sent", f"siaga112-dispatch-{dispatch}-sent"),
        ("dispatch.resent", f"siaga112-dispatch-{dispatch}-sent-resend-1"),
    ]
    first, resent = rows[0].payload, rows[1].payload
    assert first["dispatch"]["resend"] == 0
    assert resent["dispatch"]["resend"] == 1
    assert resent["dispatch"]["status"] == "sent"
    assert resent["dispatch"]["sent_at"] == first["dispatch"]["sent_at"]
    assert resent["dispatch"]["changed_by"] == "key:test-operator"
    assert resent["incident"]["summary"] == "Api membesar, dua orang terjebak"
    assert resent["incident"]["landmark"] == "Seberang SDN 3"

    async with sessionmaker() as session:
        lines = (
            await session.scalars(
                select(IncidentEvent).where(
                    IncidentEvent.incident_id == incident, IncidentEvent.kind == "dispatch_resent"
                )
            )
        ).all()
        audits = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "dispatch.resend", AuditEvent.entity_id == str(dispatch)
                )
            )
        ).all()
    [line] = lines
    assert line.actor == "key:test-operator"
    assert line.data["dispatch_id"] == dispatch
    assert line.data["agency"] == "damkar"
    assert (line.data["resend"], line.data["webhook"]) == (1, True)
    [audit] = audits
    assert audit.actor == "key:test-operator"
    assert audit.before is not None
    assert audit.before["resends"] == 0
    assert audit.after is not None
    assert audit.after["resends"] == 1

    # Again: counted, a message of its own; the dispatch views show the count.
    r = await client.post(f"/v1/dispatches/{dispatch}/resend", headers=auth(op))
    assert r.status_code == 200, r.text
    assert r.json()["resend_count"] == 2
    assert len(await _outbox(sessionmaker, dispatch)) == 3
    listed = (await client.get(f"/v1/incidents/{incident}/dispatches", headers=auth(op))).json()
    assert [d["resend_count"] for d in listed] == [2]
    one = (await client.get(f"/v1/dispatches/{dispatch}", headers=auth(op))).json()
    assert one["resend_count"] == 2
    assert one["created_at"] == out["created_at"]  # the acknowledgement time counts from here


async def test_an_agency_without_webhook_sees_the_resend_on_its_page(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    staff = auth(await make_key(sessionmaker, Role.AGENCY, "bpbd"))
    incident = await _incident(client, op, category="pohon_tumbang")
    dispatch = await _dispatch(client, op, incident, "bpbd")
    r = await client.post(f"/v1/dispatches/{dispatch}/resend", headers=auth(op))
    assert r.status_code == 200, r.text
    assert await _outbox(sessionmaker, dispatch) == []
    [mine] = (await client.get("/v1/dispatches", headers=staff)).json()["items"]
    assert (mine["id"], mine["resend_count"]) == (dispatch, 1)
    assert mine["last_resent_at"] is not None


async def test_resend_after_the_acknowledgement_is_409_and_changes_nothing(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    await _webhook(client, keys, "damkar")
    staff = auth(await make_key(sessionmaker, Role.AGENCY, "damkar"))
    incident = await _incident(client, op)
    dispatch = await _dispatch(client, op, incident, "damkar")
    r = await client.patch(
        f"/v1/dispatches/{dispatch}", headers=staff, json={"status": "acknowledged"}
    )
    assert r.status_code == 200, r.text
    before = await _counts(sessionmaker)
    r = await client.post(f"/v1/dispatches/{dispatch}/resend", headers=auth(op))
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "dispatch_not_waiting"
    assert body["details"][0]["status"] == "acknowledged"
    assert await _counts(sessionmaker) == before
    one = (await client.get(f"/v1/dispatches/{dispatch}", headers=auth(op))).json()
    assert (one["status"], one["resend_count"]) == ("acknowledged", 0)


async def test_resend_of_a_missing_dispatch_is_404(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    before = await _counts(sessionmaker)
    r = await client.post("/v1/dispatches/999999999/resend", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"
    assert await _counts(sessionmaker) == before


@pytest.mark.parametrize("role", [Role.INTEGRATOR, Role.AGENCY])
async def test_resend_by_a_role_that_may_not_dispatch_is_403_and_changes_nothing(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM, role: Role
) -> None:
    op = keys[Role.OPERATOR]
    incident = await _incident(client, op)
    dispatch = await _dispatch(client, op, incident, "damkar")
    key = await make_key(sessionmaker, Role.AGENCY, "damkar") if role is Role.AGENCY else keys[role]
    before = await _counts(sessionmaker)
    r = await client.post(f"/v1/dispatches/{dispatch}/resend", headers=auth(key))
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"
    assert await _counts(sessionmaker) == before


async def test_the_overdue_alert_rearms_from_the_resend(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    incident = await _incident(client, op)
    dispatch = await _dispatch(client, op, incident, "damkar")
    watchdog = system_actor("dispatch-worker")
    async with sessionmaker() as session:
        await session.execute(
            update(Dispatch)
            .where(Dispatch.id == dispatch)
            .values(created_at=Dispatch.created_at - timedelta(seconds=200))
        )
        assert await alert_unacknowledged(session=session, timeout_s=120, actor=watchdog) == [
            dispatch
        ]
        await session.commit()
    alerted = (await client.get(f"/v1/dispatches/{dispatch}", headers=auth(op))).json()
    assert alerted["unack_alerted_at"] is not None

    r = await client.post(f"/v1/dispatches/{dispatch}/resend", headers=auth(op))
    assert r.status_code == 200, r.text
    assert r.json()["unack_alerted_at"] is None
    async with sessionmaker() as session:
        # 200 s after the first send but just resent: no alert yet.
        assert await alert_unacknowledged(session=session, timeout_s=120, actor=watchdog) == []
        await asyncio.sleep(0.05)
        # Once the resend too has gone unanswered for the timeout: alerted again, once.
        assert await alert_unacknowledged(session=session, timeout_s=0.01, actor=watchdog) == [
            dispatch
        ]
        assert await alert_unacknowledged(session=session, timeout_s=0.01, actor=watchdog) == []
        await session.commit()
        alerts = await session.scalar(
            select(func.count()).where(
                IncidentEvent.incident_id == incident,
                IncidentEvent.kind == "dispatch_unacknowledged",
            )
        )
    assert alerts == 2


async def test_a_resend_makes_the_refused_earlier_message_due_now(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    """The agency's receiver refused the first message, now waiting out its back-off: the
    resend (which goes out only after it, in order) makes it due at once, and says so."""
    op = keys[Role.OPERATOR]
    await _webhook(client, keys, "damkar")
    dispatch = await _dispatch(client, op, await _incident(client, op), "damkar")
    [first] = await _outbox(sessionmaker, dispatch)
    async with sessionmaker() as session:
        await session.execute(
            update(WebhookOutbox)
            .where(WebhookOutbox.id == first.id)
            .values(
                attempts=4,
                last_error="503 from the receiver",
                next_attempt_at=func.now() + timedelta(minutes=5),
            )
        )
        await session.commit()
    r = await client.post(f"/v1/dispatches/{dispatch}/resend", headers=auth(op))
    assert r.status_code == 200, r.text
    first_again, resent = await _outbox(sessionmaker, dispatch)
    async with sessionmaker() as session:
        now = await session.scalar(select(func.now()))
        audit = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "dispatch.resend",
                    AuditEvent.entity_id == str(dispatch),
                )
            )
        ).one()
    assert now is not None
    assert first_again.next_attempt_at <= now
    assert first_again.attempts == 4  # its attempts are its own: only made due
    assert resent.next_attempt_at <= now
    assert audit.after is not None
    assert audit.after["earlier_messages_due_now"] == 1
