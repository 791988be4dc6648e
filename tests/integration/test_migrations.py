"""Migrations: a database behind the scripts is detected (serve refuses to start on it), and
every migration downgrades and upgrades again cleanly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.db.manage import alembic_config, drop_database, pending_migrations, upgrade
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
