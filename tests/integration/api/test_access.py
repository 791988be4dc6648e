"""Every /v1 route needs a key; roles decide what a key may do; probes stay open."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.auth.models import ApiKey
from siaga112.auth.roles import Role
from siaga112.auth.service import hash_key, revoke_key, system_actor
from tests.conftest import auth


async def test_healthz_needs_no_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_reports_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["components"]["database"]["ready"] is True


@pytest.mark.parametrize("path", ["/v1/incidents", "/v1/calls", "/v1/agencies"])
async def test_v1_without_key_is_401_with_code(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(path)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


async def test_unknown_key_is_401(client: httpx.AsyncClient, keys: dict[Role, str]) -> None:
    r = await client.get("/v1/incidents", headers=auth("s112_" + "x" * 43))
    assert r.status_code == 401
    r = await client.get("/v1/incidents", headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status_code == 401


async def test_revoked_key_is_refused(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = keys[Role.OPERATOR]
    assert (await client.get("/v1/incidents", headers=auth(key))).status_code == 200
    async with sessionmaker() as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key)))
        assert key_id is not None
        await revoke_key(session=session, key_id=key_id, actor=system_actor("tests"))
        await session.commit()
    assert (await client.get("/v1/incidents", headers=auth(key))).status_code == 401


async def test_keys_are_stored_only_as_hashes(
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    async with sessionmaker() as session:
        stored = (await session.scalars(select(ApiKey.key_hash))).all()
    assert all(raw not in stored for raw in keys.values())
    assert {hash_key(raw) for raw in keys.values()} <= set(stored)


async def test_integrator_reads_but_cannot_write(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    h = auth(keys[Role.INTEGRATOR])
    assert (await client.get("/v1/incidents", headers=h)).status_code == 200
    r = await client.post("/v1/incidents", headers=h, json={"channel": "radio"})
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


async def test_operator_cannot_manage_agencies(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    r = await client.post(
        "/v1/agencies",
        headers=auth(keys[Role.OPERATOR]),
        json={"code": "basarnas", "name": "Basarnas", "kind": "disaster"},
    )
    assert r.status_code == 403


async def test_openapi_documents_bearer_and_examples(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    create = spec["components"]["schemas"]["IncidentCreate"]
    assert create.get("examples"), "request schemas carry examples"
    assert "/v1/incidents/{incident_id}/duplicate-of" in spec["paths"]
