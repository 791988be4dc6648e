"""bench/drill: its own processes told from others' by the database their environment names; the
HA drill's stream callers."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.drill import database_of
from bench.drill_ha import CALLER_SCENARIO, stream_scenario

from siaga112_sandbox.sipp import SIP_CONF


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("postgresql+asyncpg://postgres@127.0.0.1:5432/siaga112_drill", "siaga112_drill"),
        # Another process on a replica pair: SQLAlchemy's URL parser refuses the host list.
        (
            "postgresql+asyncpg://postgres@127.0.0.1:5441,127.0.0.1:5442/siaga112"
            "?target_session_attrs=read-write",
            "siaga112",
        ),
        ("postgresql://u:p%2Fw@h/db?sslmode=require", "db"),
    ],
)
def test_database_of(url: str, database: str) -> None:
    assert database_of(url) == database


def test_ha_stream_callers_stay_for_varied_times(tmp_path: Path) -> None:
    """bench/drill --ha: each stream caller's time on the line is drawn around --hold, not the
    same for all (with the same, app_queue never rang the operators behind a full queue)."""
    written = stream_scenario(2.0, tmp_path)
    text = written.read_text()
    assert '<pause distribution="uniform" min="1000" max="3000"/>' in text
    assert "<pause/>" not in text
    original = (SIP_CONF / CALLER_SCENARIO).read_text()
    assert text.replace('<pause distribution="uniform" min="1000" max="3000"/>', "<pause/>") == (
        original
    )
