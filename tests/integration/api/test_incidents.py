"""Incidents through the API: open, read with timeline, change along the lifecycle, notes,
duplicates, filters and keyset pagination; every change audited."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from tests.conftest import auth


async def _open(client: httpx.AsyncClient, key: str, **fields: Any) -> dict[str, Any]:
    body = {"channel": "walk_in"} | fields
    r = await client.post("/v1/incidents", headers=auth(key), json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_create_then_get_shows_timeline(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    key = keys[Role.OPERATOR]
    created = await _open(
        client,
        key,
        category="pohon_tumbang",
        priority=2,
        address="Jl. Blandongan, Pasuruan",
        summary="Pohon tumbang",
    )
    assert created["status"] == "new"
    assert created["created_by"] == "key:test-operator"
    assert "in_progress" in created["allowed_statuses"]
    r = await client.get(f"/v1/incidents/{created['id']}", headers=auth(key))
    assert r.status_code == 200
    detail = r.json()
    assert detail["category"] == "pohon_tumbang"
    assert detail["calls"] == []
    assert detail["locations"] == []
    assert [e["kind"] for e in detail["timeline"]] == ["created"]
    assert detail["timeline"][0]["actor"] == "key:test-operator"


async def test_channel_call_cannot_be_created_by_hand(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    r = await client.post(
        "/v1/incidents", headers=auth(keys[Role.OPERATOR]), json={"channel": "call"}
    )
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "body.channel"


async def test_patch_changes_fields_and_records_before_after(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = keys[Role.OPERATOR]
    inc = await _open(client, key)
    r = await client.patch(
        f"/v1/incidents/{inc['id']}",
        headers=auth(key),
        json={
            "category": "kebakaran",
            "classification": "emergency",
            "status": "in_progress",
            "priority": 1,
            "address": "Jl. Raya Jatiasih 10",
            "summary": "Rumah terbakar",
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["status"], out["category"], out["priority"]) == ("in_progress", "kebakaran", 1)
    async with sessionmaker() as session:
        audit = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "incident.update", AuditEvent.entity_id == str(inc["id"])
                )
            )
        ).one()
    assert audit.before == {
        "status": "new",
        "category": None,
        "classification": None,
        "priority": 3,
        "address": None,
        "summary": None,
    }
    assert audit.after is not None
    assert audit.after["status"] == "in_progress"
    assert audit.actor == "key:test-operator"
    assert audit.actor_key_id is not None
    timeline = (await client.get(f"/v1/incidents/{inc['id']}/timeline", headers=auth(key))).json()
    assert timeline[-1]["kind"] == "updated"
    assert timeline[-1]["data"]["status"] == {"from": "new", "to": "in_progress"}


async def test_invalid_transition_is_409_and_changes_nothing(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    key = keys[Role.OPERATOR]
    inc = await _open(client, key, summary="awal")
    r = await client.patch(
        f"/v1/incidents/{inc['id']}",
        headers=auth(key),
        json={"status": "resolved", "summary": "tidak boleh tersimpan"},
    )
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "invalid_transition"
    assert "in_progress" in body["details"][0]["allowed"]
    after = (await client.get(f"/v1/incidents/{inc['id']}", headers=auth(key))).json()
    assert after["status"] == "new"
    assert after["summary"] == "awal"


async def test_closed_incident_reopens_only_for_supervisor(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    op, sup = keys[Role.OPERATOR], keys[Role.SUPERVISOR]
    inc = await _open(client, op)
    r = await client.patch(
        f"/v1/incidents/{inc['id']}",
        headers=auth(op),
        json={"status": "closed", "classification": "prank"},
    )
    assert r.status_code == 200
    assert r.json()["closed_at"] is not None
    r = await client.patch(
        f"/v1/incidents/{inc['id']}", headers=auth(op), json={"status": "in_progress"}
    )
    assert r.status_code == 409
    r = await client.patch(
        f"/v1/incidents/{inc['id']}", headers=auth(sup), json={"status": "in_progress"}
    )
    assert r.status_code == 200
    assert r.json()["closed_at"] is None


async def test_note_lands_in_timeline(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    key = keys[Role.OPERATOR]
    inc = await _open(client, key)
    r = await client.post(
        f"/v1/incidents/{inc['id']}/notes",
        headers=auth(key),
        json={"text": "Pelapor menelepon ulang"},
    )
    assert r.status_code == 201
    timeline = (await client.get(f"/v1/incidents/{inc['id']}/timeline", headers=auth(key))).json()
    assert timeline[-1]["kind"] == "note"
    assert timeline[-1]["data"] == {"text": "Pelapor menelepon ulang"}


async def test_duplicates_point_at_the_root_and_never_cycle(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    key = keys[Role.OPERATOR]
    a, b, c = [await _open(client, key, summary=s) for s in ("a", "b", "c")]
    r = await client.post(
        f"/v1/incidents/{b['id']}/duplicate-of", headers=auth(key), json={"duplicate_of": a["id"]}
    )
    assert r.status_code == 200
    assert r.json()["duplicate_of_id"] == a["id"]
    assert r.json()["classification"] == "duplicate"
    # c duplicates b, which is itself a duplicate: c is linked to the root a.
    r = await client.post(
        f"/v1/incidents/{c['id']}/duplicate-of", headers=auth(key), json={"duplicate_of": b["id"]}
    )
    assert r.json()["duplicate_of_id"] == a["id"]
    # a cannot now become a duplicate of c (that would be a cycle).
    r = await client.post(
        f"/v1/incidents/{a['id']}/duplicate-of", headers=auth(key), json={"duplicate_of": c["id"]}
    )
    assert r.status_code == 409
    r = await client.post(
        f"/v1/incidents/{a['id']}/duplicate-of", headers=auth(key), json={"duplicate_of": a["id"]}
    )
    assert r.status_code == 422
    root = (await client.get(f"/v1/incidents/{a['id']}", headers=auth(key))).json()
    assert root["duplicate_of_id"] is None
    assert [e["kind"] for e in root["timeline"]].count("duplicate_received") == 2


async def test_missing_incident_is_404(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    key = keys[Role.OPERATOR]
    for method, path, body in [
        ("GET", "/v1/incidents/987654321", None),
        ("PATCH", "/v1/incidents/987654321", {"priority": 1}),
        ("POST", "/v1/incidents/987654321/notes", {"text": "x"}),
    ]:
        r = await client.request(method, path, headers=auth(key), json=body)
        assert r.status_code == 404, path
        assert r.json()["code"] == "not_found"


async def test_filters_and_keyset_pagination_walk_every_row_once(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    key = keys[Role.OPERATOR]
    ids = []
    for i in range(7):
        inc = await _open(client, key, category="bencana", caller_number="081200000" + str(i % 2))
        ids.append(inc["id"])
    await _open(client, key, category="medis")
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"category": "bencana", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/incidents", headers=auth(key), params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert seen == sorted(seen, reverse=True), "newest first"
    r = await client.get(
        "/v1/incidents",
        headers=auth(key),
        params={"caller_number": "0812000001", "category": "bencana"},
    )
    assert {i["caller_number"] for i in r.json()["items"]} == {"0812000001"}
    assert len(r.json()["items"]) == 3
    r = await client.get(
        "/v1/incidents", headers=auth(key), params={"status": ["closed"], "category": "bencana"}
    )
    assert r.json()["items"] == []


async def test_time_range_filter(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    key = keys[Role.OPERATOR]
    inc = await _open(client, key, category="hewan")
    at = inc["created_at"]
    r = await client.get(
        "/v1/incidents", headers=auth(key), params={"created_from": at, "category": "hewan"}
    )
    assert inc["id"] in [i["id"] for i in r.json()["items"]]
    r = await client.get(
        "/v1/incidents", headers=auth(key), params={"created_to": at, "category": "hewan"}
    )
    assert inc["id"] not in [i["id"] for i in r.json()["items"]]


async def test_relinking_a_duplicates_children_is_on_their_timelines_and_audited(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = keys[Role.OPERATOR]
    a, b, c = [await _open(client, key) for _ in range(3)]
    # c duplicates b; then b turns out to duplicate a: c now points at a too.
    r = await client.post(
        f"/v1/incidents/{c['id']}/duplicate-of", headers=auth(key), json={"duplicate_of": b["id"]}
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/incidents/{b['id']}/duplicate-of", headers=auth(key), json={"duplicate_of": a["id"]}
    )
    assert r.status_code == 200, r.text
    child = (await client.get(f"/v1/incidents/{c['id']}", headers=auth(key))).json()
    assert child["duplicate_of_id"] == a["id"]
    relinked = [e for e in child["timeline"] if e["kind"] == "duplicate_relinked"]
    assert len(relinked) == 1
    assert relinked[0]["actor"] == "key:test-operator"
    assert relinked[0]["data"] == {"from": b["id"], "to": a["id"]}
    root = (await client.get(f"/v1/incidents/{a['id']}", headers=auth(key))).json()
    received = [e["data"] for e in root["timeline"] if e["kind"] == "duplicate_received"]
    assert {d["incident"] for d in received} == {b["id"], c["id"]}
    async with sessionmaker() as session:
        audit = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "incident.link_duplicate",
                    AuditEvent.entity_id == str(c["id"]),
                )
            )
        ).all()
    assert [(e.actor, (e.before or {})["duplicate_of_id"]) for e in audit] == [
        ("key:test-operator", None),
        ("key:test-operator", b["id"]),
    ]
    assert (audit[1].after or {})["duplicate_of_id"] == a["id"]
