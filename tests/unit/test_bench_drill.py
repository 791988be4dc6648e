"""The drill tells its own processes from others' by the database their environment names."""

from __future__ import annotations

import pytest
from bench.drill import database_of


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
