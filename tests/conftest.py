"""Shared fixtures: a fresh PostgreSQL database per run, a rolled-back transaction per test,
the API through httpx, and API keys for each role."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.config import Settings
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.roles import drop_roles, ensure_roles, local_roles, role_url

# Properties check correctness, not speed (bench/ measures speed): on a loaded 2-core CI machine
# hypothesis' timing checks (per-example deadline, slow-generation health check) fail at random.
hypothesis_settings.register_profile(
    "siaga112", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("SIAGA112_HYPOTHESIS_PROFILE", "siaga112"))

ADMIN_URL = os.environ.get(
    "SIAGA112_TEST_DATABASE_ADMIN_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def fresh_database(tier: str) -> Iterator[str]:
    """A database of its own for one run of one tier of tests, with roles of its own (roles
    are cluster-wide: concurrent runs on one cluster never share one), migrated by its owner
    role, dropped after with its roles. Yields the URL of the service's role, which can only
    read and write rows: the tests run the service as a deployment does."""
    database = f"siaga112_test_{tier}_{uuid.uuid4().hex[:10]}"
    roles = local_roles(database)
    asyncio.run(ensure_roles(ADMIN_URL, roles))
    try:
        upgrade(role_url(ADMIN_URL, roles.owner, database=database), roles=roles)
        yield role_url(ADMIN_URL, roles.service, database=database)
    finally:
        asyncio.run(drop_database(f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}"))
        asyncio.run(drop_roles(ADMIN_URL, roles))


def owner_url(database_url: str) -> str:
    """The schema owner's URL for a test database's service URL (cleaning up what the service
    role may not delete: the audit trail)."""
    return database_url.replace("_app@", "_owner@", 1)


def asterisk_role(database_url: str) -> str:
    """Asterisk's role of a test database (``local_roles``)."""
    return local_roles(make_url(database_url).database or "").asterisk.name  # type: ignore[union-attr]


async def engine_for(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    yield from fresh_database("run")


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for eng in engine_for(database_url):
        yield eng


@pytest.fixture(scope="session")
async def owner_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The schema owner's engine: for cleaning up what the service's role may not delete (the
    audit trail) after tests that commit."""
    async for eng in engine_for(owner_url(database_url)):
        yield eng


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection per test inside a transaction that is rolled back at the end; the
    code under test commits to savepoints within it."""
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            yield conn
        finally:
            await trans.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def client(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, sessionmaker=sessionmaker)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c


@pytest.fixture
async def keys(sessionmaker: async_sessionmaker) -> dict[Role, str]:  # type: ignore[type-arg]
    out: dict[Role, str] = {}
    async with sessionmaker() as session:
        # Agency keys are bound to an agency; tests that need one create it themselves.
        for role in (r for r in Role if r is not Role.AGENCY):
            created = await create_key(
                session=session,
                name=f"test-{role.value}",
                role=role,
                actor=system_actor("tests"),
                # The operator key acts as operator 6001 (its own queue session and phone).
                operator_extension=OPERATOR_EXTENSION if role is Role.OPERATOR else None,
            )
            out[role] = created.raw
        await session.commit()
    return out


async def operator_key(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    extension: str | None,
) -> str:
    """An operator key acting as `extension` (None: bound to no operator)."""
    async with sessionmaker() as session:
        created = await create_key(
            session=session,
            name=f"test-operator-{extension}",
            role=Role.OPERATOR,
            actor=system_actor("tests"),
            operator_extension=extension,
        )
        await session.commit()
    return created.raw


# The operator the `keys` fixture's operator key acts as.
OPERATOR_EXTENSION = "6001"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
