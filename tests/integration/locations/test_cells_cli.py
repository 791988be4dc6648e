"""`siaga112 cells import FILE`: progress on stderr, a summary with bad rows counted, exit 0;
a missing file is an error message, not a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from siaga112.cli import main
from tests.integration.locations.conftest import write_csv

# MCC 999 (test networks): committed rows that no other test looks at, removed afterwards.
ROWS = [
    "LTE,999,1,7,1001,0,106.8,-6.2,500,3,1,1459813819,1700000000,0",
    "NR,999,1,7,68719476735,0,106.8,-6.2,300,3,1,1459813819,1700000000,0",
    "LTE,999,1,7,not-a-cell,0,106.8,-6.2,500,3,1,1459813819,1700000000,0",
]


async def _delete_test_rows(database_url: str) -> int:
    u = make_url(database_url)
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, database=u.database)
    try:
        status: str = await conn.execute("DELETE FROM cell_towers WHERE mcc = 999")
        return int(status.split()[-1])
    finally:
        await conn.close()


def test_cells_import_reports_progress_and_bad_rows(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIAGA112_DATABASE_URL", database_url)
    path = write_csv(tmp_path / "cells.csv.gz", ROWS, gz=True)
    try:
        assert main(["cells", "import", str(path)]) == 0
    finally:
        deleted = asyncio.run(_delete_test_rows(database_url))
    out, err = capsys.readouterr()
    assert "3 rows" in out
    assert "2 new" in out
    assert "1 bad" in out
    assert "rows/s" in err
    assert "bad row: line 4" in err
    assert deleted == 2


def test_cells_import_of_missing_file_is_an_error(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SIAGA112_DATABASE_URL", database_url)
    assert main(["cells", "import", str(tmp_path / "nope.csv")]) == 1
    assert "error:" in capsys.readouterr().err
