"""`cells import` on real PostgreSQL: plain and gzip, upsert, bad rows counted without aborting,
older rows never replacing newer ones, progress reported; lookup of a parsed cell."""

from __future__ import annotations

import gzip
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from siaga112.locations.cells import ImportProgress, find_cell, import_cells
from siaga112.locations.models import CellTower
from siaga112.locations.pani import parse_pani
from tests.integration.locations.conftest import (
    HEADER,
    TEST_CELL,
    TEST_PANI,
    driver,
    write_csv,
)


async def _count(connection: AsyncConnection) -> int:
    return int((await connection.scalar(select(func.count()).select_from(CellTower))) or 0)


async def test_gzip_import_counts_bad_rows_and_keeps_going(
    connection: AsyncConnection, tmp_path: Path
) -> None:
    lines = [
        TEST_CELL,
        "GSM,510,1,4666,17767,0,106.8,-6.2,800,3,1,1459813819,1700000000,0",
        "this is not a cell",
        "LTE,510,10,161,x,0,106.9,-6.2,999,15,1,1459813819,1600000000,0",
        "UMTS,510,11,48879,11259375,0,107.6,-6.9,2500,40,1,1459813819,1700000000,0",
    ]
    path = write_csv(tmp_path / "cells.csv.gz", lines, gz=True)
    before = await _count(connection)
    seen: list[ImportProgress] = []
    report = await import_cells(
        await driver(connection), path, batch_rows=2, on_progress=seen.append
    )
    assert (report.rows_read, report.inserted, report.bad_rows) == (5, 3, 2)
    assert len(report.bad_examples) == 2
    assert "line 4" in report.bad_examples[0]
    assert len(seen) == 3, "one progress report per batch"
    assert seen[-1].bytes_read == seen[-1].bytes_total
    assert await _count(connection) == before + 3


async def test_reimport_updates_and_older_rows_do_not_replace_newer(
    connection: AsyncConnection, tmp_path: Path
) -> None:
    conn = await driver(connection)
    before = await _count(connection)
    await import_cells(conn, write_csv(tmp_path / "a.csv", [TEST_CELL]))
    newer = TEST_CELL.replace("1200", "600").replace("1700000000", "1750000000")
    older = TEST_CELL.replace("1200", "9999").replace("1700000000", "1600000000")
    # The same cell twice in one file: the newer row wins, the other is "unchanged".
    report = await import_cells(conn, write_csv(tmp_path / "b.csv", [older, newer], header=False))
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 1)
    report = await import_cells(conn, write_csv(tmp_path / "c.csv", [older]))
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 1)
    assert (
        await connection.scalar(select(CellTower.range_m).where(CellTower.cell == 187448654)) == 600
    )
    assert await _count(connection) == before + 1


async def test_parsed_cell_is_found_and_unknown_cell_is_none(
    connection: AsyncConnection,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    await import_cells(await driver(connection), write_csv(tmp_path / "a.csv", [TEST_CELL]))
    known = parse_pani(TEST_PANI).cell
    other = parse_pani("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4F").cell
    assert known is not None
    assert other is not None
    async with sessionmaker() as session:
        position = await find_cell(session=session, cell=known)
        assert position is not None
        assert (position.lat, position.lon, position.range_m) == (-6.28211, 106.97432, 1200)
        assert await find_cell(session=session, cell=other) is None


async def test_file_starting_with_a_byte_order_mark_has_its_header_skipped(
    connection: AsyncConnection, tmp_path: Path
) -> None:
    # As a spreadsheet saves "CSV UTF-8": BOM, header, CRLF line ends.
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join([HEADER, TEST_CELL]).encode() + b"\r\n")
    report = await import_cells(await driver(connection), path)
    assert (report.rows_read, report.bad_rows, report.bad_examples) == (1, 0, ())
    gz = write_csv(tmp_path / "bom.csv.gz", [TEST_CELL], gz=True)
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + gzip.decompress(gz.read_bytes())))
    report = await import_cells(await driver(connection), gz)
    assert (report.rows_read, report.bad_rows) == (1, 0)
