"""Failed authentications: counted on /metrics, logged without the key, limited per source
address (429 `too_many_auth_failures`); keys that expire; /metrics only for allowed networks;
the CLI's key options."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.app import create_app
from siaga112.auth.models import ApiKey
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, hash_key, system_actor
from siaga112.config import ApiSettings, Settings
from siaga112.errors import InvalidRequest
from siaga112.metrics import Metrics
from tests.conftest import auth

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def limited(
    settings: Settings, engine: AsyncEngine, sessionmaker: Sessions
) -> AsyncIterator[tuple[httpx.AsyncClient, Metrics]]:
    conf = settings.model_copy(
        update={"api": ApiSettings(auth_failures_max=5, auth_failures_window_s=60)}
    )
    metrics = Metrics()
    app = create_app(conf, engine=engine, sessionmaker=sessionmaker, metrics=metrics)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("192.0.2.7", 5000)),
        base_url="http://siaga112.test",
    ) as c:
        yield c, metrics


async def test_wrong_keys_are_counted_logged_without_the_key_and_limited_per_source(
    limited: tuple[httpx.AsyncClient, Metrics],
    keys: dict[Role, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, metrics = limited
    guesses = [f"s112_guess{i:04d}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" for i in range(5)]
    with caplog.at_level(logging.WARNING):
        for guess in guesses:
            r = await client.get("/v1/incidents", headers=auth(guess))
            assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    assert metrics.counters["api_auth_failures"] == 5
    logged = [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]
    assert len(logged) == 5
    assert all("192.0.2.7" in line for line in logged)
    assert not any(g in line or g[:12] in line for g in guesses for line in logged)
    # Over the limit: refused, even with a good key, and said so with a stable code.
    r = await client.get("/v1/incidents", headers=auth(keys[Role.INTEGRATOR]))
    assert (r.status_code, r.json()["code"]) == (429, "too_many_auth_failures")
    assert int(r.headers["retry-after"]) >= 1
    assert metrics.counters["api_auth_failures"] == 5, "a refusal by the limit is no guess"


async def test_another_source_is_not_limited(
    settings: Settings, engine: AsyncEngine, sessionmaker: Sessions, keys: dict[Role, str]
) -> None:
    conf = settings.model_copy(update={"api": ApiSettings(auth_failures_max=2)})
    app = create_app(conf, engine=engine, sessionmaker=sessionmaker)
    bad = auth("s112_" + "x" * 43)
    for host, n in (("192.0.2.1", 3), ("192.0.2.2", 0)):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(host, 1)), base_url="http://t"
        ) as c:
            for _ in range(n):
                await c.get("/v1/incidents", headers=bad)
            r = await c.get("/v1/incidents", headers=auth(keys[Role.INTEGRATOR]))
            assert r.status_code == (429 if n else 200), (host, r.text)


async def test_expired_key_is_refused(client: httpx.AsyncClient, sessionmaker: Sessions) -> None:
    async with sessionmaker() as session:
        created = await create_key(
            session=session,
            name="short-lived",
            role=Role.INTEGRATOR,
            actor=system_actor("tests"),
            expires_in_days=1,
        )
        await session.commit()
    assert created.expires_at is not None
    assert (await client.get("/v1/incidents", headers=auth(created.raw))).status_code == 200
    async with sessionmaker() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.key_hash == hash_key(created.raw))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    r = await client.get("/v1/incidents", headers=auth(created.raw))
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")


@pytest.mark.parametrize(
    ("role", "extension", "days"),
    [
        (Role.SUPERVISOR, "6001", None),
        (Role.OPERATOR, "60a1", None),
        (Role.OPERATOR, "6001", 0),
        (Role.OPERATOR, "6001", 99999),
    ],
)
async def test_key_options_are_checked(
    sessionmaker: Sessions, role: Role, extension: str | None, days: int | None
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(InvalidRequest):
            await create_key(
                session=session,
                name="bad",
                role=role,
                actor=system_actor("tests"),
                operator_extension=extension,
                expires_in_days=days,
            )


async def test_metrics_are_served_only_to_allowed_networks(
    settings: Settings, engine: AsyncEngine, sessionmaker: Sessions
) -> None:
    metrics = Metrics()
    metrics.inc("api_auth_failures")
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker, metrics=metrics)
    for host, status in (("127.0.0.1", 200), ("192.0.2.9", 403)):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(host, 1)), base_url="http://t"
        ) as c:
            r = await c.get("/metrics")
            assert r.status_code == status, (host, r.text)
            if status == 200:
                assert "siaga112_api_auth_failures_total 1" in r.text
            else:
                assert r.json()["code"] == "forbidden"
