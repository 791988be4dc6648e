"""Bad input to every write of the foundation API (incidents, notes, duplicate links,
agencies) gets a clear 4xx with a stable code, and nothing stored changes: no row, no timeline
line, no audit event."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.agencies.models import Agency
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.incidents.models import Incident, IncidentEvent
from tests.conftest import auth

INJECTION = "Robert'); DROP TABLE incidents;--"


async def _counts(sm: async_sessionmaker) -> dict[str, int]:  # type: ignore[type-arg]
    async with sm() as session:
        out = {}
        for name, model in (
            ("incidents", Incident),
            ("events", IncidentEvent),
            ("agencies", Agency),
            ("audit", AuditEvent),
        ):
            out[name] = int(await session.scalar(select(func.count()).select_from(model)) or 0)
        return out


@pytest.fixture
async def incident_id(client: httpx.AsyncClient, keys: dict[Role, str]) -> int:
    r = await client.post(
        "/v1/incidents",
        headers=auth(keys[Role.OPERATOR]),
        json={"channel": "radio", "summary": "asli", "priority": 2},
    )
    assert r.status_code == 201
    return int(r.json()["id"])


BAD_CREATES: list[tuple[Any, str]] = [
    ({"channel": "walk_in", "summary": "x" * 4001}, "body.summary"),
    ({"channel": "walk_in", "caller_name": "n" * 201}, "body.caller_name"),
    ({"channel": "walk_in", "address": "a" * 501}, "body.address"),
    ({"channel": "walk_in", "landmark": "m" * 301}, "body.landmark"),
    ({"channel": "walk_in", "landmark": "masjid\x07"}, "body.landmark"),
    ({"channel": "walk_in", "kecamatan": "Jatiasih"}, "body.kecamatan"),
    ({"channel": "call"}, "body.channel"),
    ({"channel": "pigeon"}, "body.channel"),
    ({"channel": "walk_in", "category": "banjir_bandang"}, "body.category"),
    ({"channel": "walk_in", "classification": "maybe"}, "body.classification"),
    ({"channel": "walk_in", "priority": 9}, "body.priority"),
    ({"channel": "walk_in", "priority": INJECTION}, "body.priority"),
    ({"channel": "walk_in", "caller_number": INJECTION}, "body.caller_number"),
    ({"channel": "walk_in", "summary": "nul\x00byte"}, "body.summary"),
    ({"summary": "no channel"}, "body.channel"),
    (["not", "an", "object"], "body"),
]


@pytest.mark.parametrize(("body", "field"), BAD_CREATES)
async def test_bad_incident_create_is_422_and_stores_nothing(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    body: Any,
    field: str,
) -> None:
    before = await _counts(sessionmaker)
    r = await client.post("/v1/incidents", headers=auth(keys[Role.OPERATOR]), json=body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["code"] == "validation_error"
    assert any(d["field"].startswith(field) for d in payload["details"]), payload
    assert await _counts(sessionmaker) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": ""}, "body.text"),
        ({"text": "t" * 4001}, "body.text"),
        ({"text": "ok", "author": "someone else"}, "body.author"),
        ({}, "body.text"),
        ({"text": 42}, "body.text"),
    ],
)
async def test_bad_note_is_422_and_adds_no_line(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    incident_id: int,
    body: dict[str, Any],
    field: str,
) -> None:
    before = await _counts(sessionmaker)
    r = await client.post(
        f"/v1/incidents/{incident_id}/notes", headers=auth(keys[Role.OPERATOR]), json=body
    )
    assert r.status_code == 422, r.text
    assert any(d["field"].startswith(field) for d in r.json()["details"]), r.json()
    assert await _counts(sessionmaker) == before


@pytest.mark.parametrize(
    ("target", "status", "code"),
    [(0, 422, "validation_error"), (999_999, 404, "not_found"), ("self", 422, "validation_error")],
)
async def test_bad_duplicate_link_is_refused_and_links_nothing(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    incident_id: int,
    target: int | str,
    status: int,
    code: str,
) -> None:
    before = await _counts(sessionmaker)
    dup = incident_id if target == "self" else target
    h = auth(keys[Role.OPERATOR])
    r = await client.post(
        f"/v1/incidents/{incident_id}/duplicate-of", headers=h, json={"duplicate_of": dup}
    )
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert await _counts(sessionmaker) == before
    after = (await client.get(f"/v1/incidents/{incident_id}", headers=h)).json()
    assert after["duplicate_of_id"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"code": "Damkar Baru", "name": "x", "kind": "fire"}, "body.code"),
        ({"code": "damkar_x", "name": "x", "kind": "volcano"}, "body.kind"),
        ({"code": "damkar_x", "name": "n" * 201, "kind": "fire"}, "body.name"),
        ({"code": "damkar_x", "name": "x", "kind": "fire", "phone": INJECTION}, "body.phone"),
        ({"code": "damkar_x", "name": "x", "kind": "fire", "secret": "s"}, "body.secret"),
        ({"name": "x", "kind": "fire"}, "body.code"),
    ],
)
async def test_bad_agency_create_is_422_and_stores_nothing(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    body: dict[str, Any],
    field: str,
) -> None:
    before = await _counts(sessionmaker)
    r = await client.post("/v1/agencies", headers=auth(keys[Role.SUPERVISOR]), json=body)
    assert r.status_code == 422, r.text
    assert any(d["field"].startswith(field) for d in r.json()["details"]), r.json()
    assert await _counts(sessionmaker) == before


async def test_duplicate_agency_code_is_409_and_leaves_the_existing_one(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    h = auth(keys[Role.SUPERVISOR])
    existing = next(a for a in (await client.get("/v1/agencies", headers=h)).json())
    before = await _counts(sessionmaker)
    r = await client.post(
        "/v1/agencies",
        headers=h,
        json={"code": existing["code"], "name": "Tiruan", "kind": "other"},
    )
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "conflict"
    assert await _counts(sessionmaker) == before
    again = (await client.get("/v1/agencies", headers=h)).json()
    assert next(a for a in again if a["code"] == existing["code"]) == existing


async def test_bad_agency_update_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    h = auth(keys[Role.SUPERVISOR])
    agency = (await client.get("/v1/agencies", headers=h)).json()[0]
    before = await _counts(sessionmaker)
    bad = ({"kind": "volcano"}, {"code": "renamed"}, {"phone": INJECTION}, {"name": None})
    for body in bad:
        r = await client.patch(f"/v1/agencies/{agency['id']}", headers=h, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == "validation_error"
    assert await _counts(sessionmaker) == before
    again = (await client.get("/v1/agencies", headers=h)).json()
    assert next(a for a in again if a["id"] == agency["id"]) == agency


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/incidents", {"channel": "radio", "summary": "dari integrator"}),
        ("PATCH", "/v1/incidents/{id}", {"status": "in_progress"}),
        ("POST", "/v1/incidents/{id}/notes", {"text": "catatan"}),
        ("POST", "/v1/agencies", {"code": "pmi_x", "name": "PMI X", "kind": "red_cross"}),
    ],
)
async def test_forbidden_write_is_403_and_stores_nothing(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    incident_id: int,
    method: str,
    path: str,
    body: dict[str, Any],
) -> None:
    before = await _counts(sessionmaker)
    r = await client.request(
        method,
        path.format(id=incident_id),
        headers=auth(keys[Role.INTEGRATOR]),
        json=body,
    )
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"
    assert await _counts(sessionmaker) == before
