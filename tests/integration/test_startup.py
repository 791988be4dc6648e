"""siaga112 refuses to start, in one clear line and a non-zero exit, when its database is
unreachable or migrated by other code; nothing half-starts."""

from __future__ import annotations

import logging
import socket

import pytest

from siaga112.cli import main
from siaga112.config import Settings
from siaga112.service import run_service


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_with_postgresql_unreachable_exits_1_saying_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/siaga112"
    with caplog.at_level(logging.ERROR, logger="siaga112.service"):
        assert run_service(Settings(database_url=url), with_telephony=False) == 1
    (record,) = [r for r in caplog.records if r.name == "siaga112.service"]
    assert "not reachable" in record.getMessage()
    assert record.exc_info is None


def test_db_upgrade_with_postgresql_unreachable_exits_1_saying_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/siaga112"
    monkeypatch.setenv("SIAGA112_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 1
    assert "PostgreSQL is not reachable" in capsys.readouterr().err
