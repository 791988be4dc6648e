"""Dispatch through the API: defaults per category, the dispatch lifecycle with the incident
moving to `dispatched`, timeline and audit of every change, the outbox row written in the same
transaction, agency-scoped keys, and delivery settings whose secret is never shown again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.dispatch import service
from siaga112.dispatch.models import WebhookOutbox
from siaga112.errors import InvalidRequest, NotFound
from siaga112.locations.service import add_location
from siaga112.locations.sources import LocationSource
from tests.conftest import auth
from tests.integration.dispatch.conftest import make_key

SM = async_sessionmaker[AsyncSession]

# Not resolvable (RFC 6761 .invalid): accepted when set, never reached.
HOOK = "https://damkar.example.invalid/hook"
HOOK2 = "https://damkar.example.invalid/hook2"


async def _incident(client: httpx.AsyncClient, key: str, **fields: Any) -> dict[str, Any]:
    body = {"channel": "walk_in", "category": "kecelakaan", "address": "Jl. Ahmad Yani"} | fields
    r = await client.post("/v1/incidents", headers=auth(key), json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def _dispatch(
    client: httpx.AsyncClient, key: str, incident_id: int, agencies: Any = "defaults"
) -> dict[str, Any]:
    r = await client.post(
        f"/v1/incidents/{incident_id}/dispatches",
        headers=auth(key),
        json={"agencies": agencies, "note": "Dua korban"},
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_seeded_defaults_follow_the_centres_practice(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    r = await client.get("/v1/dispatch-defaults", headers=auth(keys[Role.INTEGRATOR]))
    assert r.status_code == 200
    defaults = {d["category"]: sorted(d["agencies"]) for d in r.json()}
    assert defaults["kebakaran"] == ["damkar"]
    assert defaults["kecelakaan"] == ["dinkes", "polri"]
    assert defaults["kdrt"] == ["dp3a", "polri"]
    assert defaults["pohon_tumbang"] == ["bpbd"]
    assert defaults["orang_hilang"] == ["bpbd", "polri"]
    assert defaults["other"] == []


async def test_defaults_dispatch_moves_incident_to_dispatched_with_timeline_and_audit(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op)
    batch = await _dispatch(client, op, inc["id"])
    assert sorted(d["agency_code"] for d in batch["items"]) == ["dinkes", "polri"]
    assert all(d["status"] == "sent" for d in batch["items"])
    assert batch["items"][0]["allowed_statuses"] == ["acknowledged", "declined"]
    assert batch["items"][0]["incident"]["category"] == "kecelakaan"
    detail = (await client.get(f"/v1/incidents/{inc['id']}", headers=auth(op))).json()
    assert detail["status"] == "dispatched"
    kinds = [e["kind"] for e in detail["timeline"]]
    assert kinds.count("dispatch_created") == 2
    assert "status_changed" in kinds
    # Dispatching again skips agencies that still have an active dispatch.
    again = await _dispatch(client, op, inc["id"], ["polri", "damkar"])
    assert [d["agency_code"] for d in again["items"]] == ["damkar"]
    assert [d["agency_code"] for d in again["already_active"]] == ["polri"]
    async with sessionmaker() as session:
        actions = (
            await session.scalars(
                select(AuditEvent.action).where(
                    AuditEvent.entity_type == "dispatch",
                    AuditEvent.entity_id.in_([str(d["id"]) for d in batch["items"]]),
                )
            )
        ).all()
    assert sorted(actions) == ["dispatch.create", "dispatch.create"]


async def test_dispatch_status_walks_the_lifecycle_and_rejects_invalid_moves(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op, category="kebakaran")
    (d,) = (await _dispatch(client, op, inc["id"]))["items"]
    url = f"/v1/dispatches/{d['id']}"
    r = await client.patch(url, headers=auth(op), json={"status": "on_scene"})
    assert r.status_code == 409
    assert r.json()["code"] == "invalid_transition"
    assert r.json()["details"][0]["allowed"] == ["acknowledged", "declined"]
    for status in ("acknowledged", "acknowledged", "en_route", "on_scene", "completed"):
        r = await client.patch(url, headers=auth(op), json={"status": status, "remark": "ok"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == status
    out = r.json()
    assert out["completed_at"]
    assert out["acknowledged_at"]
    assert out["en_route_at"]
    r = await client.patch(url, headers=auth(op), json={"status": "declined", "reason": "x"})
    assert r.status_code == 409
    timeline = (await client.get(f"/v1/incidents/{inc['id']}/timeline", headers=auth(op))).json()
    changes = [e["data"]["to"] for e in timeline if e["kind"] == "dispatch_status_changed"]
    # The repeated "acknowledged" changed nothing and recorded nothing.
    assert changes == ["acknowledged", "en_route", "on_scene", "completed"]


async def test_declining_needs_a_reason(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op, category="medis")
    (d,) = (await _dispatch(client, op, inc["id"]))["items"]
    r = await client.patch(
        f"/v1/dispatches/{d['id']}", headers=auth(op), json={"status": "declined"}
    )
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "body.reason"
    r = await client.patch(
        f"/v1/dispatches/{d['id']}",
        headers=auth(op),
        json={"status": "declined", "reason": "Ambulans sedang bertugas"},
    )
    assert r.status_code == 200
    assert r.json()["decline_reason"] == "Ambulans sedang bertugas"
    # A declined agency may be sent again.
    again = await _dispatch(client, op, inc["id"], ["dinkes"])
    assert len(again["items"]) == 1


async def test_a_new_dispatch_after_a_decline_moves_the_incident_to_dispatched_again(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op, category="kebakaran")
    (d,) = (await _dispatch(client, op, inc["id"]))["items"]
    r = await client.patch(
        f"/v1/dispatches/{d['id']}",
        headers=auth(op),
        json={"status": "declined", "reason": "Semua unit sedang bertugas"},
    )
    assert r.status_code == 200, r.text
    # Nobody is on the way: the operator takes the incident back and finds another agency.
    r = await client.patch(
        f"/v1/incidents/{inc['id']}", headers=auth(op), json={"status": "in_progress"}
    )
    assert r.status_code == 200, r.text
    (again,) = (await _dispatch(client, op, inc["id"], ["bpbd"]))["items"]
    detail = (await client.get(f"/v1/incidents/{inc['id']}", headers=auth(op))).json()
    assert detail["status"] == "dispatched"
    moves = [
        (e["data"]["status"]["from"], e["data"]["status"]["to"])
        for e in detail["timeline"]
        if e["kind"] == "status_changed"
    ]
    assert moves == [
        ("new", "dispatched"),
        ("dispatched", "in_progress"),
        ("in_progress", "dispatched"),
    ]
    async with sessionmaker() as session:
        audit = (
            await session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.action == "incident.update",
                    AuditEvent.entity_id == str(inc["id"]),
                )
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [(e.before, e.after) for e in audit][-1] == (
        {"status": "in_progress"},
        {"status": "dispatched"},
    )
    assert again["agency_code"] == "bpbd"


async def test_a_resolved_incident_is_not_moved_by_a_late_dispatch(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op, category="kebakaran")
    await _dispatch(client, op, inc["id"])
    r = await client.patch(
        f"/v1/incidents/{inc['id']}", headers=auth(op), json={"status": "resolved"}
    )
    assert r.status_code == 200, r.text
    # The lifecycle has no resolved -> dispatched: the dispatch is made, the status stays.
    await _dispatch(client, op, inc["id"], ["bpbd"])
    detail = (await client.get(f"/v1/incidents/{inc['id']}", headers=auth(op))).json()
    assert detail["status"] == "resolved"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"agencies": ["nope_agency"]}, 422, "validation_error"),
        ({"agencies": []}, 422, "validation_error"),
        ({"agencies": "all"}, 422, "validation_error"),
        ({"agencies": "defaults", "extra": 1}, 422, "validation_error"),
    ],
)
async def test_bad_dispatch_requests_are_rejected(
    client: httpx.AsyncClient, keys: dict[Role, str], body: Any, status: int, code: str
) -> None:
    inc = await _incident(client, keys[Role.OPERATOR])
    r = await client.post(
        f"/v1/incidents/{inc['id']}/dispatches", headers=auth(keys[Role.OPERATOR]), json=body
    )
    assert r.status_code == status, r.text
    assert r.json()["code"] == code


async def test_closed_incident_and_missing_defaults_cannot_be_dispatched(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op, category="other")
    r = await client.post(
        f"/v1/incidents/{inc['id']}/dispatches", headers=auth(op), json={"agencies": "defaults"}
    )
    assert r.status_code == 422
    await client.patch(f"/v1/incidents/{inc['id']}", headers=auth(op), json={"status": "closed"})
    r = await client.post(
        f"/v1/incidents/{inc['id']}/dispatches", headers=auth(op), json={"agencies": ["damkar"]}
    )
    assert r.status_code == 409
    r = await client.post(
        "/v1/incidents/999999999/dispatches", headers=auth(op), json={"agencies": ["damkar"]}
    )
    assert r.status_code == 404


async def test_supervisor_edits_defaults_for_the_site(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    r = await client.put(
        "/v1/dispatch-defaults/pohon_tumbang", headers=sup, json={"agencies": ["bpbd", "damkar"]}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"category": "pohon_tumbang", "agencies": ["bpbd", "damkar"]}
    inc = await _incident(client, keys[Role.OPERATOR], category="pohon_tumbang")
    batch = await _dispatch(client, keys[Role.OPERATOR], inc["id"])
    assert sorted(d["agency_code"] for d in batch["items"]) == ["bpbd", "damkar"]
    r = await client.put(
        "/v1/dispatch-defaults/pohon_tumbang",
        headers=auth(keys[Role.OPERATOR]),
        json={"agencies": []},
    )
    assert r.status_code == 403


async def test_webhook_secret_is_shown_once_and_never_again(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    agencies = (await client.get("/v1/agencies", headers=sup)).json()
    damkar = next(a for a in agencies if a["code"] == "damkar")
    url = f"/v1/agencies/{damkar['id']}/dispatch-settings"
    r = await client.put(url, headers=sup, json={"webhook_url": HOOK})
    assert r.status_code == 200, r.text
    secret = r.json()["webhook_secret"]
    assert secret
    assert len(secret) >= 32
    shown = await client.get(url, headers=sup)
    assert shown.json()["has_webhook_secret"] is True
    assert secret not in shown.text
    r = await client.put(
        url,
        headers=sup,
        json={"webhook_url": HOOK2, "share_caller": True},
    )
    assert r.json()["webhook_secret"] is None  # kept, not shown
    r = await client.put(
        url,
        headers=sup,
        json={"webhook_url": HOOK2, "rotate_secret": True},
    )
    rotated = r.json()["webhook_secret"]
    assert rotated
    assert rotated != secret
    r = await client.put(url, headers=sup, json={"webhook_url": "ftp://127.0.0.1/x"})
    assert r.status_code == 422
    assert (await client.get(url, headers=auth(keys[Role.OPERATOR]))).status_code == 403
    async with sessionmaker() as session:
        audits = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "agency.dispatch_settings")
            )
        ).all()
    assert audits
    for a in audits:
        assert secret not in str(a.after)
        assert rotated not in str(a.after)


async def test_outbox_row_is_written_with_the_dispatch_or_not_at_all(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    agencies = (await client.get("/v1/agencies", headers=sup)).json()
    damkar = next(a for a in agencies if a["code"] == "damkar")
    await client.put(
        f"/v1/agencies/{damkar['id']}/dispatch-settings",
        headers=sup,
        json={"webhook_url": HOOK},
    )
    inc = await _incident(client, keys[Role.OPERATOR], category="kebakaran")
    # A dispatch whose transaction rolls back leaves no message behind ...
    async with sessionmaker() as session:
        batch = await service.create_dispatches(
            session=session,
            incident_id=inc["id"],
            agencies="defaults",
            note=None,
            actor=system_actor("tests"),
            request_id=None,
        )
        assert len(batch.created) == 1
        await session.rollback()
    async with sessionmaker() as session:
        assert (await session.scalars(select(WebhookOutbox))).all() == []
    # ... and one that commits has its message, with a stable idempotency key.
    (d,) = (await _dispatch(client, keys[Role.OPERATOR], inc["id"]))["items"]
    async with sessionmaker() as session:
        rows = (
            await session.scalars(select(WebhookOutbox).where(WebhookOutbox.dispatch_id == d["id"]))
        ).all()
    assert [(r.event, r.idempotency_key) for r in rows] == [
        ("dispatch.sent", f"siaga112-dispatch-{d['id']}-sent")
    ]
    payload = rows[0].payload
    assert payload["schema"] == "siaga112.eido/1"
    assert payload["incident"]["category"] == "kebakaran"
    assert payload["dispatch"]["agency"]["code"] == "damkar"
    assert payload["caller"] is None  # damkar is not allowed the caller by default


# ------------------------------------------------------------------ agency-scoped keys


async def test_agency_key_needs_an_existing_agency(sessionmaker: SM) -> None:
    with pytest.raises(InvalidRequest):
        await make_key(sessionmaker, Role.AGENCY)
    with pytest.raises(NotFound):
        await make_key(sessionmaker, Role.AGENCY, "no_such_agency")
    with pytest.raises(InvalidRequest):
        await make_key(sessionmaker, Role.OPERATOR, "damkar")


async def test_agency_key_sees_and_updates_only_its_own_dispatches(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    dinkes = auth(await make_key(sessionmaker, Role.AGENCY, "dinkes"))
    polri = auth(await make_key(sessionmaker, Role.AGENCY, "polri"))
    damkar = auth(await make_key(sessionmaker, Role.AGENCY, "damkar"))
    inc = await _incident(client, op, summary="Tabrakan motor", caller_number="+6281234567890")
    batch = await _dispatch(client, op, inc["id"])
    by_agency = {d["agency_code"]: d for d in batch["items"]}
    mine, theirs = by_agency["dinkes"], by_agency["polri"]

    listed = (await client.get("/v1/dispatches", headers=dinkes)).json()["items"]
    assert {d["agency_code"] for d in listed} == {"dinkes"}
    assert (await client.get("/v1/dispatches", headers=damkar)).json()["items"] == []
    # Filtering by another agency does not widen the scope.
    r = await client.get("/v1/dispatches?agency=polri", headers=dinkes)
    assert r.json()["items"] == []

    r = await client.get(f"/v1/dispatches/{mine['id']}", headers=dinkes)
    assert r.status_code == 200
    facts = r.json()["incident"]
    assert facts["summary"] == "Tabrakan motor"
    assert facts["address"] == "Jl. Ahmad Yani"
    assert facts["caller"] is None  # not allowed the caller's number

    # Another agency's dispatch is "not found", exactly like one that does not exist.
    other = await client.get(f"/v1/dispatches/{theirs['id']}", headers=dinkes)
    missing = await client.get("/v1/dispatches/999999999", headers=dinkes)
    assert other.status_code == missing.status_code == 404
    assert other.json()["message"].replace(str(theirs["id"]), "N") == missing.json()[
        "message"
    ].replace("999999999", "N")
    r = await client.patch(
        f"/v1/dispatches/{theirs['id']}", headers=dinkes, json={"status": "acknowledged"}
    )
    assert r.status_code == 404

    r = await client.patch(
        f"/v1/dispatches/{mine['id']}", headers=dinkes, json={"status": "acknowledged"}
    )
    assert r.status_code == 200
    r = await client.patch(
        f"/v1/dispatches/{theirs['id']}", headers=polri, json={"status": "acknowledged"}
    )
    assert r.status_code == 200
    timeline = (await client.get(f"/v1/incidents/{inc['id']}/timeline", headers=auth(op))).json()
    acks = [e for e in timeline if e["kind"] == "dispatch_status_changed"]
    assert {e["actor"] for e in acks} == {"key:test-dinkes", "key:test-polri"}

    # Everything else is closed to an agency key.
    for method, path, body in [
        ("GET", "/v1/incidents", None),
        ("GET", f"/v1/incidents/{inc['id']}", None),
        ("GET", f"/v1/incidents/{inc['id']}/dispatches", None),
        ("POST", f"/v1/incidents/{inc['id']}/dispatches", {"agencies": ["dinkes"]}),
        ("GET", "/v1/calls", None),
        ("GET", "/v1/agencies", None),
        ("GET", "/v1/dispatch-defaults", None),
        ("GET", "/v1/webhooks/outbox", None),
    ]:
        r = await client.request(method, path, headers=dinkes, json=body)
        assert r.status_code == 403, (method, path, r.status_code)


async def test_agency_allowed_the_caller_gets_the_number(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    agencies = (await client.get("/v1/agencies", headers=sup)).json()
    dinkes = next(a for a in agencies if a["code"] == "dinkes")
    await client.put(
        f"/v1/agencies/{dinkes['id']}/dispatch-settings", headers=sup, json={"share_caller": True}
    )
    key = auth(await make_key(sessionmaker, Role.AGENCY, "dinkes"))
    inc = await _incident(client, keys[Role.OPERATOR], caller_number="+6281234567890")
    batch = await _dispatch(client, keys[Role.OPERATOR], inc["id"], ["dinkes"])
    r = await client.get(f"/v1/dispatches/{batch['items'][0]['id']}", headers=key)
    assert r.json()["incident"]["caller"]["number"] == "+6281234567890"


# ------------------------------------------------------------------ the point agencies get


async def test_agencies_get_the_point_the_operator_sees(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    """A precise fix from 20 minutes ago and a coarse one now: the operator's rule shows the
    recent one (the caller may have moved); the dispatch API and the webhook must send the
    agency to that same point, not to the smallest radius ever seen."""
    sup = auth(keys[Role.SUPERVISOR])
    agencies = (await client.get("/v1/agencies", headers=sup)).json()
    damkar = next(a for a in agencies if a["code"] == "damkar")
    await client.put(
        f"/v1/agencies/{damkar['id']}/dispatch-settings",
        headers=sup,
        json={"webhook_url": HOOK},
    )
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op, category="kebakaran")
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        for source, lat, radius, age_min in (
            (LocationSource.AML_SMS, -6.30, 10.0, 20),
            (LocationSource.NETWORK_CELL, -6.25, 1200.0, 0),
        ):
            await add_location(
                session=session,
                call_id=None,
                incident_id=inc["id"],
                source=source,
                lat=lat,
                lon=106.97,
                radius_m=radius,
                confidence=None,
                method=None,
                observed_at=now - timedelta(minutes=age_min),
                raw=None,
                address=None,
                actor=system_actor("tests"),
            )
        await session.commit()
    detail = (await client.get(f"/v1/incidents/{inc['id']}", headers=auth(op))).json()
    shown = detail["best_location"]["location"]
    assert (shown["lat"], shown["radius_m"]) == (-6.25, 1200.0)
    (d,) = (await _dispatch(client, op, inc["id"]))["items"]
    async with sessionmaker() as session:
        (row,) = (
            await session.scalars(select(WebhookOutbox).where(WebhookOutbox.dispatch_id == d["id"]))
        ).all()
    sent = row.payload["location"]
    assert (sent["lat"], sent["lon"], sent["radius_m"]) == (shown["lat"], shown["lon"], 1200.0)
    agency = auth(await make_key(sessionmaker, Role.AGENCY, "damkar"))
    r = await client.get(f"/v1/dispatches/{d['id']}", headers=agency)
    assert r.status_code == 200, r.text
    facts = r.json()["incident"]["location"]
    assert (facts["lat"], facts["lon"], facts["radius_m"]) == (-6.25, 106.97, 1200.0)
    # Acknowledging sends the agency the same point again.
    r = await client.patch(
        f"/v1/dispatches/{d['id']}", headers=agency, json={"status": "acknowledged"}
    )
    assert r.status_code == 200, r.text
    async with sessionmaker() as session:
        payloads = (
            await session.scalars(
                select(WebhookOutbox.payload).where(WebhookOutbox.dispatch_id == d["id"])
            )
        ).all()
    assert [p["location"]["radius_m"] for p in payloads] == [1200.0, 1200.0]


async def test_dispatch_read_without_any_location_is_audited(
    client: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: SM
) -> None:
    op = keys[Role.OPERATOR]
    inc = await _incident(client, op, category="kebakaran")
    (d,) = (await _dispatch(client, op, inc["id"]))["items"]
    r = await client.get(f"/v1/dispatches/{d['id']}", headers=auth(op))
    assert r.json()["incident"]["location"] is None
    async with sessionmaker() as session:
        reads = (
            await session.scalars(
                select(AuditEvent.after).where(
                    AuditEvent.action == "location.read",
                    AuditEvent.entity_id == str(inc["id"]),
                )
            )
        ).all()
    assert {"via": "dispatch", "dispatch_id": d["id"], "location_id": None} in reads
