"""Bad input gets a clear 4xx with a stable code, and nothing stored changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from siaga112.auth.roles import Role
from tests.conftest import auth


@pytest.fixture
async def incident(client: httpx.AsyncClient, keys: dict[Role, str]) -> dict[str, Any]:
    r = await client.post(
        "/v1/incidents",
        headers=auth(keys[Role.OPERATOR]),
        json={"channel": "radio", "summary": "asli", "priority": 2},
    )
    assert r.status_code == 201
    data: dict[str, Any] = r.json()
    return data


BAD_PATCHES = [
    ({"summary": "x" * 4001}, "body.summary"),
    ({"address": "y" * 501}, "body.address"),
    ({"unknown_field": 1}, "body.unknown_field"),
    ({"status": "on_fire"}, "body.status"),
    ({"category": "banjir"}, "body.category"),
    ({"priority": 0}, "body.priority"),
    ({"priority": "1; DROP TABLE incidents"}, "body.priority"),
    ({"summary": "bad\x00byte"}, "body.summary"),
    ({"status": None}, "body.status"),
]


@pytest.mark.parametrize(("body", "field"), BAD_PATCHES)
async def test_bad_patch_is_422_with_field_and_leaves_incident(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    incident: dict[str, Any],
    body: dict[str, Any],
    field: str,
) -> None:
    h = auth(keys[Role.OPERATOR])
    r = await client.patch(f"/v1/incidents/{incident['id']}", headers=h, json=body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["code"] == "validation_error"
    assert field in [d["field"] for d in payload["details"]]
    after = (await client.get(f"/v1/incidents/{incident['id']}", headers=h)).json()
    assert (after["summary"], after["priority"], after["status"]) == ("asli", 2, "new")
    assert len(after["timeline"]) == 1


async def test_injection_like_text_is_stored_verbatim(
    client: httpx.AsyncClient, keys: dict[Role, str], incident: dict[str, Any]
) -> None:
    h = auth(keys[Role.OPERATOR])
    text = "Robert'); DROP TABLE incidents;-- <script>alert(1)</script> ${jndi:x}"
    r = await client.patch(f"/v1/incidents/{incident['id']}", headers=h, json={"summary": text})
    assert r.status_code == 200
    assert (await client.get(f"/v1/incidents/{incident['id']}", headers=h)).json()[
        "summary"
    ] == text
    assert (await client.get("/v1/incidents", headers=h)).status_code == 200


async def test_non_json_body_is_422_invalid_json(
    client: httpx.AsyncClient, keys: dict[Role, str], incident: dict[str, Any]
) -> None:
    h = auth(keys[Role.OPERATOR]) | {"Content-Type": "application/json"}
    r = await client.patch(f"/v1/incidents/{incident['id']}", headers=h, content=b"{not json")
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_json"


async def test_oversized_body_is_413(
    client: httpx.AsyncClient, keys: dict[Role, str], incident: dict[str, Any]
) -> None:
    h = auth(keys[Role.OPERATOR]) | {"Content-Type": "application/json"}
    big = b'{"summary": "' + b"a" * 70_000 + b'"}'
    r = await client.patch(f"/v1/incidents/{incident['id']}", headers=h, content=big)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"


async def test_oversized_chunked_body_without_length_is_413_and_changes_nothing(
    client: httpx.AsyncClient, keys: dict[Role, str], incident: dict[str, Any]
) -> None:
    h = auth(keys[Role.OPERATOR]) | {"Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"summary": "'
        for _ in range(20):
            yield b"a" * 4096
        yield b'"}'

    r = await client.patch(f"/v1/incidents/{incident['id']}", headers=h, content=chunks())
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large"
    after = (await client.get(f"/v1/incidents/{incident['id']}", headers=h)).json()
    assert after["summary"] == "asli"


async def test_chunked_body_within_limit_is_read_whole(
    client: httpx.AsyncClient, keys: dict[Role, str], incident: dict[str, Any]
) -> None:
    h = auth(keys[Role.OPERATOR]) | {"Content-Type": "application/json"}

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"summary": "'
        for _ in range(3):
            yield b"b" * 1000
        yield b'"}'

    r = await client.patch(f"/v1/incidents/{incident['id']}", headers=h, content=chunks())
    assert r.status_code == 200, r.text
    assert r.json()["summary"] == "b" * 3000


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "nope"}, "query.status"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 10_000}, "query.limit"),
        ({"caller_number": "1' OR '1'='1"}, "query.caller_number"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"created_from": "yesterday"}, "query.created_from"),
    ],
)
async def test_bad_list_query_is_422(
    client: httpx.AsyncClient, keys: dict[Role, str], params: dict[str, Any], field: str
) -> None:
    r = await client.get("/v1/incidents", headers=auth(keys[Role.OPERATOR]), params=params)
    assert r.status_code == 422, r.text
    assert any(d["field"].startswith(field) for d in r.json()["details"]), r.json()


async def test_bad_path_id_is_422(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    r = await client.get("/v1/incidents/abc", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 422
    r = await client.get("/v1/calls/not-a-uuid", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 422
