"""`make run`'s demo console accounts: created once, the printed passwords sign in every time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from siaga112.accounts.demo import ensure_demo_accounts
from siaga112.auth.roles import Role
from siaga112.config import Settings
from siaga112.db.manage import drop_database, upgrade
from tests.conftest import ADMIN_URL


@pytest.fixture
def scratch_url() -> Iterator[str]:
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/siaga112_test_demo_{uuid.uuid4().hex[:8]}"
    upgrade(url)
    yield url
    asyncio.run(drop_database(url))


def test_demo_accounts_are_idempotent_and_keep_their_passwords(
    scratch_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=scratch_url, state_dir=tmp_path)
    first = ensure_demo_accounts(settings)
    assert [(a.username, a.role, a.extension) for a in first] == [
        ("operator6001", Role.OPERATOR, "6001"),
        ("operator6002", Role.OPERATOR, "6002"),
        ("supervisor", Role.SUPERVISOR, None),
    ]
    assert len({a.password for a in first}) == 3
    assert ensure_demo_accounts(settings) == first
    assert (tmp_path / "console-demo.json").stat().st_mode & 0o777 == 0o600
