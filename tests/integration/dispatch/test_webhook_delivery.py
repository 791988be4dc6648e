"""Webhook delivery against a real HTTP receiver on 127.0.0.1: it fails, times out, goes away
and comes back, and the worker is stopped and restarted -- and every message arrives, signed,
in order per dispatch, never twice under different idempotency keys. Committed data (see
conftest): the worker claims rows in transactions of its own, as in production."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import func, select, update

from siaga112.audit.models import AuditEvent
from siaga112.dispatch.models import Dispatch, WebhookOutbox
from siaga112.incidents.models import IncidentEvent
from tests.integration.dispatch.conftest import World, until


async def _outbox(world: World, incident_id: int) -> list[WebhookOutbox]:
    async with world.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(WebhookOutbox)
                    .join(Dispatch, Dispatch.id == WebhookOutbox.dispatch_id)
                    .where(Dispatch.incident_id == incident_id)
                    .order_by(WebhookOutbox.id)
                )
            ).all()
        )


async def _all_delivered(world: World, incident_id: int, expected: int) -> bool:
    rows = await _outbox(world, incident_id)
    return len(rows) == expected and all(r.delivered_at is not None for r in rows)


def _assert_exactly_once_per_key(world: World, rows: list[WebhookOutbox]) -> None:
    """Every message accepted by the receiver; duplicates only as byte-identical repeats of
    the same idempotency key; every request correctly signed."""
    received = world.receiver.received
    assert all(r.signature_ok for r in received), "every request verifies with the secret"
    keys = {r.idempotency_key for r in rows}
    accepted = [r.key for r in world.receiver.accepted]
    assert set(accepted) == keys, "every message accepted"
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for r in received:
        bodies[r.key].add(r.body)
        payload = json.loads(r.body)
        assert payload["message_id"] == r.key
        assert r.headers["x-siaga112-event"] == payload["event"]
        assert r.headers["x-siaga112-timestamp"].isdigit()
    assert all(len(b) == 1 for b in bodies.values()), "a retry repeats the same bytes"


async def test_failing_then_hanging_receiver_gets_every_message_in_order(world: World) -> None:
    a, _ = await world.agency("dinkes")
    b, _ = await world.agency("polri")
    key_a, key_b = await world.agency_key(a), await world.agency_key(b)
    world.receiver.plan = ["500", "500", "hang", "500", "hang"]
    worker = world.worker()
    await worker.start()
    incident = await world.incident(summary="Tabrakan beruntun")
    r = await world.client.post(
        f"/v1/incidents/{incident}/dispatches",
        headers=world.supervisor,
        json={"agencies": [a, b], "note": "Tiga korban"},
    )
    assert r.status_code == 201, r.text
    ids = {d["agency_code"]: d["id"] for d in r.json()["items"]}
    for code, key in ((a, key_a), (b, key_b)):
        r = await world.client.patch(
            f"/v1/dispatches/{ids[code]}", headers=key, json={"status": "acknowledged"}
        )
        assert r.status_code == 200, r.text
    r = await world.client.patch(
        f"/v1/dispatches/{ids[a]}", headers=key_a, json={"status": "en_route", "remark": "Unit 2"}
    )
    assert r.status_code == 200

    await until(lambda: _all_delivered(world, incident, 5), within=20, what="delivery")
    rows = await _outbox(world, incident)
    _assert_exactly_once_per_key(world, rows)
    assert sum(r.attempts for r in rows) >= 5 + 5, "the planned failures were retried"
    assert any(r.answered is None for r in world.receiver.received), "timeouts happened"
    assert any(r.answered == 500 for r in world.receiver.received)
    assert world.metrics.counters["webhook_delivery_failures"] >= 5
    assert world.metrics.counters["webhook_deliveries"] == 5
    # Per dispatch, the receiver accepted the messages in the order they happened.
    order: dict[str, list[str]] = defaultdict(list)
    for rec in world.receiver.accepted:
        order[rec.path].append(json.loads(rec.body)["dispatch"]["status"])
    assert order[f"/{a}"] == ["sent", "acknowledged", "en_route"]
    assert order[f"/{b}"] == ["sent", "acknowledged"]
    en_route = next(
        json.loads(x.body) for x in world.receiver.accepted if x.key.endswith("en_route")
    )
    assert en_route["dispatch"]["remark"] == "Unit 2"
    assert en_route["incident"]["summary"] == "Tabrakan beruntun"
    assert en_route["dispatch"]["note"] == "Tiga korban"
    # The story is on the timeline.
    async with world.sessionmaker() as session:
        kinds = (
            await session.scalars(
                select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident)
            )
        ).all()
    assert kinds.count("webhook_delivered") == 5
    assert kinds.count("webhook_failing") >= 1


async def test_receiver_down_shows_failing_then_delivers_after_restart(world: World) -> None:
    code, _ = await world.agency("bpbd")
    await world.receiver.stop()  # the agency's system is down: connection refused
    worker = world.worker()
    await worker.start()
    incident = await world.incident(category="pohon_tumbang")
    r = await world.client.post(
        f"/v1/incidents/{incident}/dispatches", headers=world.supervisor, json={"agencies": [code]}
    )
    assert r.status_code == 201

    async def failing() -> bool:
        r = await world.client.get(
            f"/v1/webhooks/outbox?status=failing&agency={code}", headers=world.supervisor
        )
        items = r.json()["items"]
        return bool(items) and items[0]["attempts"] >= 2

    await until(failing, what="failing message")
    r = await world.client.get(
        f"/v1/webhooks/outbox?status=failing&agency={code}", headers=world.supervisor
    )
    (item,) = r.json()["items"]
    assert item["last_error"] == "ConnectError"
    assert item["delivered_at"] is None
    assert world.metrics.counters["webhook_delivery_failures"] >= 2

    await world.receiver.start()  # same port: the agency's system is back
    await until(lambda: _all_delivered(world, incident, 1), what="delivery after restart")
    _assert_exactly_once_per_key(world, await _outbox(world, incident))
    r = await world.client.get(
        f"/v1/webhooks/outbox?status=failing&agency={code}", headers=world.supervisor
    )
    assert r.json()["items"] == []
    r = await world.client.get(
        f"/v1/webhooks/outbox?status=delivered&agency={code}", headers=world.supervisor
    )
    assert len(r.json()["items"]) == 1


async def test_worker_stopped_mid_delivery_and_restarted_loses_nothing(world: World) -> None:
    code, _ = await world.agency("damkar")
    world.receiver.hang_all = True
    first = world.worker(webhook_timeout_s=5.0, claim_lease_s=30.0)
    await first.start()
    incident = await world.incident(category="kebakaran")
    r = await world.client.post(
        f"/v1/incidents/{incident}/dispatches", headers=world.supervisor, json={"agencies": [code]}
    )
    assert r.status_code == 201
    await until(lambda: _received(world), what="request in flight")
    await first.stop()  # siaga112 stops while the POST is in flight
    (row,) = await _outbox(world, incident)
    assert row.delivered_at is None
    world.receiver.hang_all = False
    second = world.worker(webhook_timeout_s=5.0, claim_lease_s=30.0)
    await second.start()
    # Released on stop: due at once, not after the 30 s lease.
    await until(lambda: _all_delivered(world, incident, 1), within=5, what="redelivery")
    rows = await _outbox(world, incident)
    _assert_exactly_once_per_key(world, rows)
    assert len(world.receiver.received) == 2, "seen twice, both times with the same key"


async def _received(world: World) -> bool:
    return bool(world.receiver.received)


async def test_a_worker_that_died_leaves_a_lease_another_worker_takes_over(world: World) -> None:
    code, _ = await world.agency("polri")
    incident = await world.incident(category="kriminal")
    r = await world.client.post(
        f"/v1/incidents/{incident}/dispatches", headers=world.supervisor, json={"agencies": [code]}
    )
    assert r.status_code == 201
    dead = world.worker(claim_lease_s=1.0)
    claimed = await dead._claim()  # claims, then "crashes" before the POST
    assert [c.key for c in claimed] == [f"siaga112-dispatch-{r.json()['items'][0]['id']}-sent"]
    survivor = world.worker(claim_lease_s=1.0)
    await survivor.start()
    await until(lambda: _all_delivered(world, incident, 1), within=5, what="takeover")
    (row,) = await _outbox(world, incident)
    assert row.attempts == 2
    _assert_exactly_once_per_key(world, [row])


async def test_unacknowledged_dispatch_raises_one_alert(world: World) -> None:
    code, _ = await world.agency("dp3a")
    incident = await world.incident(category="kdrt")
    r = await world.client.post(
        f"/v1/incidents/{incident}/dispatches", headers=world.supervisor, json={"agencies": [code]}
    )
    dispatch_id = r.json()["items"][0]["id"]
    async with world.sessionmaker() as session:
        await session.execute(
            update(Dispatch)
            .where(Dispatch.id == dispatch_id)
            .values(created_at=func.now() - timedelta(seconds=200))
        )
        await session.commit()
    worker = world.worker(ack_timeout_s=120)
    await worker.run_once()
    await worker.run_once()
    assert world.metrics.counters["dispatch_unacknowledged"] == 1
    async with world.sessionmaker() as session:
        events = (
            await session.scalars(
                select(IncidentEvent).where(
                    IncidentEvent.incident_id == incident,
                    IncidentEvent.kind == "dispatch_unacknowledged",
                )
            )
        ).all()
        audits = (
            await session.scalars(
                select(AuditEvent.action).where(
                    AuditEvent.entity_type == "dispatch", AuditEvent.entity_id == str(dispatch_id)
                )
            )
        ).all()
    assert len(events) == 1
    assert events[0].data["dispatch_id"] == dispatch_id
    assert events[0].data["waited_s"] >= 120
    assert "dispatch.unacknowledged" in audits
    r = await world.client.get(f"/v1/dispatches/{dispatch_id}", headers=world.supervisor)
    assert r.json()["unack_alerted_at"] is not None
