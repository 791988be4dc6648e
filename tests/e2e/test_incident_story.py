"""The incident workflow's "done when", end to end: a real SIPp 112 call through the real Asterisk
opens an incident and an operator phone answers it; through the API the incident is classified,
dispatched to Damkar and Dinkes, each acknowledges with its own agency key (and cannot see the
other's dispatch), Damkar's webhook receiver (a real HTTP server on 127.0.0.1) is down and then
failing for a while before it recovers, every message arrives signed and under one idempotency
key however often it was retried, the dispatches complete, the incident is resolved and closed,
and the timeline tells the whole story in order, each line with its actor and time."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.agencies.models import Agency
from siaga112.app import create_app
from siaga112.auth.models import ApiKey
from siaga112.auth.roles import Role
from siaga112.auth.service import hash_key
from siaga112.calls.models import Call
from siaga112.config import OutboundSettings
from siaga112.dispatch.models import AgencyDispatchSettings, WebhookOutbox
from siaga112.dispatch.worker import DeliveryWorker
from siaga112.incidents.models import Incident
from siaga112.metrics import Metrics
from siaga112_sandbox.sipp import SippOperator
from tests.conftest import auth
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import call, new_number, wait_for_call
from tests.integration.dispatch.conftest import FAST, make_key, until
from tests.integration.dispatch.receiver import Receiver

# Damkar's system answers 500 once and then hangs past the sender's timeout once, after it
# came back from being down (connection refused); then it accepts everything.
AFTER_RESTART = ["500", "hang"]
DAMKAR_STATUSES = ["sent", "acknowledged", "en_route", "on_scene", "completed"]


@dataclass
class Story:
    stack: Stack
    client: httpx.AsyncClient
    receiver: Receiver
    worker: DeliveryWorker
    metrics: Metrics
    operator: dict[str, str] = field(default_factory=dict)
    supervisor: dict[str, str] = field(default_factory=dict)
    agency_keys: dict[str, dict[str, str]] = field(default_factory=dict)
    raw_keys: list[str] = field(default_factory=list)
    incidents: list[int] = field(default_factory=list)

    async def key(self, role: Role, agency: str | None = None) -> dict[str, str]:
        raw = await make_key(self.stack.sessionmaker, role, agency)
        self.raw_keys.append(raw)
        return auth(raw)

    async def outbox(self, dispatch_id: int) -> list[WebhookOutbox]:
        async with self.stack.sessionmaker() as session:
            return list(
                (
                    await session.scalars(
                        select(WebhookOutbox)
                        .where(WebhookOutbox.dispatch_id == dispatch_id)
                        .order_by(WebhookOutbox.id)
                    )
                ).all()
            )


@pytest.fixture
async def phone(stack: Stack) -> AsyncIterator[SippOperator]:
    op = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(op.start)
    yield op
    await asyncio.to_thread(op.stop)


@pytest.fixture
async def story(stack: Stack, engine: AsyncEngine) -> AsyncIterator[Story]:
    assert stack.telephony is not None
    # Damkar's system listens on this host over plain http: allowed explicitly.
    settings = stack.settings.model_copy(
        update={"outbound": OutboundSettings(allowed_networks=["127.0.0.1/32"], allow_http=True)}
    )
    app = create_app(
        settings,
        engine=engine,
        sessionmaker=stack.sessionmaker,
        call_control=stack.telephony.control,
    )
    # A port for Damkar's system, which is not listening yet: connection refused.
    receiver = Receiver()
    await receiver.start()
    await receiver.stop()
    metrics = Metrics()
    worker = DeliveryWorker(
        sessionmaker=stack.sessionmaker,
        settings=FAST,
        metrics=metrics,
        outbound=app.state.outbound,
    )
    async with stack.sessionmaker() as session:
        damkar = await session.scalar(select(Agency).where(Agency.code == "damkar"))
        assert damkar is not None
        saved = await session.get(AgencyDispatchSettings, damkar.id)
        before = (
            None if saved is None else (saved.webhook_url, saved.webhook_secret, saved.share_caller)
        )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://siaga112.test"
    ) as client:
        s = Story(stack, client, receiver, worker, metrics)
        try:
            yield s
        finally:
            await worker.stop()
            await receiver.stop()
            async with stack.sessionmaker() as session:
                # The incident cascades to its timeline, dispatches and outbox messages.
                await session.execute(delete(Incident).where(Incident.id.in_(s.incidents)))
                await session.execute(
                    delete(ApiKey).where(ApiKey.key_hash.in_([hash_key(k) for k in s.raw_keys]))
                )
                row = await session.get(AgencyDispatchSettings, damkar.id)
                if before is None and row is not None:
                    await session.delete(row)
                elif before is not None and row is not None:
                    row.webhook_url, row.webhook_secret, row.share_caller = before
                await session.commit()


def _first(timeline: list[dict[str, Any]], kind: str, **match: Any) -> int:
    for i, e in enumerate(timeline):
        if e["kind"] == kind and all(e["data"].get(k) == v for k, v in match.items()):
            return i
    raise AssertionError(f"no {kind} {match} on the timeline: {[e['kind'] for e in timeline]}")


async def test_a_real_call_is_classified_dispatched_acknowledged_delivered_and_closed(
    story: Story, phone: SippOperator
) -> None:
    api = story.client
    story.operator = await story.key(Role.OPERATOR)
    story.supervisor = await story.key(Role.SUPERVISOR)
    agencies = {
        a["code"]: a["id"] for a in (await api.get("/v1/agencies", headers=story.operator)).json()
    }
    # Damkar's system takes webhooks; Dinkes works from the API alone.
    r = await api.put(
        f"/v1/agencies/{agencies['damkar']}/dispatch-settings",
        headers=story.supervisor,
        json={"webhook_url": story.receiver.url("/damkar"), "share_caller": True},
    )
    assert r.status_code == 200, r.text
    story.receiver.secrets["/damkar"] = r.json()["webhook_secret"]
    await story.worker.start()

    # 1. A real 112 call; the operator phone answers.
    number = new_number()
    result = await call(story.stack, "caller-112.xml", caller=number, hold_ms=1500)
    assert result.ok, result.output[-1500:]
    row: Call = await wait_for_call(story.stack, Call.asserted_number == number, states={"ended"})
    assert (row.operator, row.outcome) == ("6001", "answered")
    assert row.incident_id is not None
    incident_id = row.incident_id
    story.incidents.append(incident_id)
    url = f"/v1/incidents/{incident_id}"

    # 2. The operator classifies it.
    r = await api.patch(
        url,
        headers=story.operator,
        json={
            "classification": "emergency",
            "category": "kebakaran",
            "priority": 1,
            "status": "in_progress",
            "address": "Jl. Raya Jatiasih 10, Kec. Jatiasih, Kota Bekasi",
            "summary": "Rumah terbakar, api membesar",
        },
    )
    assert r.status_code == 200, r.text

    # 3. Dispatched to two agencies; the incident moves to dispatched by itself.
    r = await api.post(
        f"{url}/dispatches",
        headers=story.operator,
        json={"agencies": ["damkar", "dinkes"], "note": "Dua rumah, satu korban luka bakar"},
    )
    assert r.status_code == 201, r.text
    ids = {d["agency_code"]: d["id"] for d in r.json()["items"]}
    assert set(ids) == {"damkar", "dinkes"}
    assert (await api.get(url, headers=story.operator)).json()["status"] == "dispatched"

    # 4. Each agency with its own key: sees its own dispatch only, acknowledges it.
    damkar = await story.key(Role.AGENCY, "damkar")
    dinkes = await story.key(Role.AGENCY, "dinkes")
    story.agency_keys = {"damkar": damkar, "dinkes": dinkes}
    for code, key, other in (("damkar", damkar, "dinkes"), ("dinkes", dinkes, "damkar")):
        listed = (await api.get("/v1/dispatches", headers=key)).json()["items"]
        # Only its own agency's dispatches (other e2e tests dispatched in this database too),
        # and of this incident exactly the one sent to it.
        assert {d["agency_code"] for d in listed} == {code}
        assert [d["id"] for d in listed if d["incident_id"] == incident_id] == [ids[code]]
        assert (await api.get(f"/v1/dispatches/{ids[other]}", headers=key)).status_code == 404
        r = await api.patch(
            f"/v1/dispatches/{ids[other]}", headers=key, json={"status": "acknowledged"}
        )
        assert r.status_code == 404, "another agency's dispatch is not there for this key"
        assert (await api.get(url, headers=key)).status_code == 403
        r = await api.patch(
            f"/v1/dispatches/{ids[code]}", headers=key, json={"status": "acknowledged"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "acknowledged"

    # 5. Damkar's system is down: delivery fails, visibly, and keeps being retried.
    async def failing_for_a_while() -> bool:
        rows = await story.outbox(ids["damkar"])
        return bool(rows) and rows[0].attempts >= 3 and rows[0].delivered_at is None

    await until(failing_for_a_while, within=15, what="repeated failed deliveries")
    failing = (
        await api.get("/v1/webhooks/outbox?status=failing", headers=story.supervisor)
    ).json()["items"]
    assert f"siaga112-dispatch-{ids['damkar']}-sent" in [m["idempotency_key"] for m in failing]
    assert story.receiver.received == []

    # 6. It comes back, fails once more and times out once, then accepts.
    story.receiver.plan = list(AFTER_RESTART)
    await story.receiver.start()
    for status in ("en_route", "on_scene", "completed"):
        for code, key in (("damkar", damkar), ("dinkes", dinkes)):
            r = await api.patch(f"/v1/dispatches/{ids[code]}", headers=key, json={"status": status})
            assert r.status_code == 200, r.text

    async def all_delivered() -> bool:
        rows = await story.outbox(ids["damkar"])
        return len(rows) == len(DAMKAR_STATUSES) and all(m.delivered_at for m in rows)

    await until(all_delivered, within=30, what="every Damkar message delivered")
    rows = await story.outbox(ids["damkar"])
    assert await story.outbox(ids["dinkes"]) == [], "Dinkes has no webhook"
    keys = [f"siaga112-dispatch-{ids['damkar']}-{s}" for s in DAMKAR_STATUSES]
    assert [m.idempotency_key for m in rows] == keys
    received = story.receiver.received
    assert all(req.signature_ok for req in received), "every request carries a valid HMAC"
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for req in received:
        bodies[req.key].add(req.body)
    assert set(bodies) == set(keys)
    assert all(len(b) == 1 for b in bodies.values()), "a retry repeats the same key and bytes"
    # The first message went through 500 and a timeout before it was accepted, each attempt
    # under the same key; every message was accepted exactly once, in order.
    sent_key = keys[0]
    assert [req.answered for req in received if req.key == sent_key] == [500, None, 200]
    assert [req.key for req in story.receiver.accepted] == keys
    first = json.loads(received[0].body)
    assert first["incident"]["id"] == incident_id
    assert first["incident"]["category"] == "kebakaran"
    assert first["caller"]["number"] == number
    assert first["dispatch"]["note"] == "Dua rumah, satu korban luka bakar"
    assert rows[0].attempts >= 3 + len(AFTER_RESTART) + 1

    # 7. The operator resolves and closes the incident.
    for status in ("resolved", "closed"):
        r = await api.patch(url, headers=story.operator, json={"status": status})
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "closed"

    # 8. The whole story, in order, each line with who and when.
    timeline = (await api.get(f"{url}/timeline", headers=story.operator)).json()
    times = [datetime.fromisoformat(e["at"]) for e in timeline]
    assert times == sorted(times)
    assert all(e["actor"] for e in timeline)
    created = _first(timeline, "created")
    answered = _first(timeline, "call_answered")
    ended = _first(timeline, "call_ended")
    classified = _first(timeline, "updated")
    dispatched = [_first(timeline, "dispatch_created", agency=a) for a in ("damkar", "dinkes")]
    to_dispatched = _first(timeline, "status_changed")
    acks = [
        _first(timeline, "dispatch_status_changed", agency=a, to="acknowledged")
        for a in ("damkar", "dinkes")
    ]
    webhook_failing = _first(timeline, "webhook_failing")
    delivered = [
        _first(timeline, "webhook_delivered", event=e)
        for e in (
            "dispatch.sent",
            "dispatch.acknowledged",
            "dispatch.en_route",
            "dispatch.on_scene",
            "dispatch.completed",
        )
    ]
    completed = [
        _first(timeline, "dispatch_status_changed", agency=a, to="completed")
        for a in ("damkar", "dinkes")
    ]
    status_moves = [
        (i, e["data"]["status"]["to"])
        for i, e in enumerate(timeline)
        if e["kind"] in {"status_changed", "updated"} and "status" in e["data"]
    ]
    assert [to for _, to in status_moves] == ["in_progress", "dispatched", "resolved", "closed"]
    resolved, closed = status_moves[2][0], status_moves[3][0]
    assert created < answered < ended < classified < min(dispatched)
    assert max(dispatched) < to_dispatched < min(acks)
    assert webhook_failing < delivered[0]
    assert delivered == sorted(delivered)
    assert max(completed + delivered) < resolved < closed == len(timeline) - 1
    # Who did what.
    actor = {i: e["actor"] for i, e in enumerate(timeline)}
    assert actor[created].startswith("system:")
    assert actor[classified] == actor[to_dispatched] == actor[closed] == "key:test-operator"
    assert [actor[i] for i in acks] == ["key:test-damkar", "key:test-dinkes"]
    assert {actor[i] for i in delivered} == {actor[webhook_failing]} == {"system:dispatch-worker"}
    assert timeline[webhook_failing]["data"]["agency"] == "damkar"
    assert timeline[classified]["data"]["classification"] == {"from": None, "to": "emergency"}
