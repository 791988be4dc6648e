"""Migrations: a database behind the scripts is detected (serve refuses to start on it), and
every migration downgrades and upgrades again cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.db.manage import (
    UnknownRevision,
    alembic_config,
    drop_database,
    pending_migrations,
    upgrade,
)
from tests.conftest import ADMIN_URL


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/siaga112_mig_{uuid.uuid4().hex[:8]}"
    yield url
    asyncio.run(drop_database(url))


def _pending(url: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_async_engine(url)
        try:
            return await pending_migrations(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_database_behind_is_detected_then_current_after_upgrade(scratch_url: str) -> None:
    upgrade(scratch_url, "0001")
    assert _pending(scratch_url), "heads beyond 0001 are pending"
    upgrade(scratch_url)
    assert _pending(scratch_url) == set()


def test_all_migrations_downgrade_and_upgrade_again(scratch_url: str) -> None:
    upgrade(scratch_url)
    cfg = alembic_config(scratch_url)
    command.downgrade(cfg, "base")
    assert _pending(scratch_url)
    command.upgrade(cfg, "heads")
    assert _pending(scratch_url) == set()


def test_database_migrated_by_other_code_is_refused_and_left_alone(scratch_url: str) -> None:
    upgrade(scratch_url)

    async def stamp(sql: str) -> list[str]:
        engine = create_async_engine(scratch_url)
        try:
            async with engine.begin() as conn:
                if sql:
                    await conn.execute(text(sql))
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
                return sorted(r.version_num for r in rows)
        finally:
            await engine.dispose()

    # As if a newer release (or another branch) had migrated this database.
    before = asyncio.run(
        stamp(
            "UPDATE alembic_version SET version_num = 'f00dfeed' "
            "WHERE version_num = (SELECT min(version_num) FROM alembic_version)"
        )
    )
    with pytest.raises(UnknownRevision, match="f00dfeed"):
        upgrade(scratch_url)
    with pytest.raises(UnknownRevision, match="f00dfeed"):
        _pending(scratch_url)
    assert asyncio.run(stamp("")) == before
