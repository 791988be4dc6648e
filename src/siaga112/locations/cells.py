"""Cell towers: import an OpenCelliD CSV into ``cell_towers`` and place a parsed cell with it.

The CSV layout (DESIGN.md §5) is
``radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal``,
plain or gzip, one row per cell, millions of rows. How OpenCelliD keys each radio, and so how a
P-Access-Network-Info cell (:mod:`siaga112.locations.pani`) maps onto it:

======  ==========  ===================================================================
radio   area        cell
======  ==========  ===================================================================
GSM     LAC         CI (16 bits)
UMTS    LAC         UTRAN cell id RNC-Id<<16 | C-Id (28 bits); a PANI with only a 4-hex
                    CI (no RNC) is looked up as that number and usually not found
LTE     TAC         ECI = eNB ID<<8 | cell (28 bits)
NR      TAC         NCI (36 bits)
======  ==========  ===================================================================

``net`` is the MNC as a number, so MNC "01" and "001" are the same key, as in OpenCelliD.

The import streams: a reader thread parses the next batch while the database takes the current
one through ``COPY`` into a temporary table and one ``INSERT ... ON CONFLICT DO UPDATE``; memory
stays at one or two batches whatever the file size. A row that does not parse is counted (with a
few examples) and skipped, never aborting the import. A row older than the one already stored
(by ``updated``) does not replace it, so importing an old file after a new one changes nothing.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.locations.models import CellTower
from siaga112.locations.pani import CellGlobalId

__all__ = [
    "CellPosition",
    "ImportProgress",
    "ImportReport",
    "find_cell",
    "find_cells",
    "import_cells",
    "parse_cell_row",
]

COLUMNS = (
    "radio",
    "mcc",
    "net",
    "area",
    "cell",
    "unit",
    "lon",
    "lat",
    "range",
    "samples",
    "changeable",
    "created",
    "updated",
    "averageSignal",
)
RADIOS = frozenset({"GSM", "UMTS", "LTE", "NR", "CDMA"})
MAX_BAD_EXAMPLES = 5
_MAX_CELL = (1 << 36) - 1  # NR cell identity, the widest
_MAX_INT32 = (1 << 31) - 1

# The staging table takes rows exactly as parsed; times stay Unix seconds until the upsert.
_STAGE = "cell_towers_stage"
_STAGE_DDL = f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (
    radio text, mcc integer, net integer, area integer, cell bigint, unit integer,
    lon double precision, lat double precision, range_m integer, samples integer,
    changeable boolean, created bigint, updated bigint, average_signal integer
)
"""
_STAGE_COLUMNS = (
    "radio",
    "mcc",
    "net",
    "area",
    "cell",
    "unit",
    "lon",
    "lat",
    "range_m",
    "samples",
    "changeable",
    "created",
    "updated",
    "average_signal",
)
# Duplicates inside one batch are collapsed (newest `updated` wins) because ON CONFLICT cannot
# touch a row twice in one statement; an existing row is replaced only by one at least as new.
_UPSERT = """
WITH up AS (
    INSERT INTO cell_towers (radio, mcc, net, area, cell, unit, lon, lat, range_m, samples,
                             changeable, created, updated, average_signal, imported_at)
    SELECT DISTINCT ON (radio, mcc, net, area, cell)
           radio, mcc, net, area, cell, unit, lon, lat, range_m, samples, changeable,
           to_timestamp(created), to_timestamp(updated), average_signal, now()
    FROM cell_towers_stage
    ORDER BY radio, mcc, net, area, cell, updated DESC NULLS LAST
    ON CONFLICT (radio, mcc, net, area, cell) DO UPDATE SET
        unit = EXCLUDED.unit, lon = EXCLUDED.lon, lat = EXCLUDED.lat,
        range_m = EXCLUDED.range_m, samples = EXCLUDED.samples,
        changeable = EXCLUDED.changeable, created = EXCLUDED.created,
        updated = EXCLUDED.updated, average_signal = EXCLUDED.average_signal,
        imported_at = EXCLUDED.imported_at
    WHERE cell_towers.updated IS NULL OR EXCLUDED.updated IS NULL
          OR EXCLUDED.updated >= cell_towers.updated
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM up
"""

StageRow = tuple[
    str,
    int,
    int,
    int,
    int,
    int | None,
    float,
    float,
    int,
    int | None,
    bool | None,
    int | None,
    int | None,
    int | None,
]


def _int(text: str, low: int, high: int) -> int:
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{value} outside {low}..{high}")
    return value


def _opt_int(text: str, low: int = -_MAX_INT32, high: int = _MAX_INT32) -> int | None:
    return _int(text, low, high) if text.strip() else None


def _coord(text: str, limit: float) -> float:
    value = float(text)
    if not math.isfinite(value) or not -limit <= value <= limit:
        raise ValueError(f"coordinate {text!r} out of range")
    return value


def parse_cell_row(fields: list[str]) -> StageRow:
    """One CSV row as the staging table takes it; raises ValueError saying what is wrong."""
    if len(fields) != len(COLUMNS):
        raise ValueError(f"{len(fields)} fields, expected {len(COLUMNS)}")
    radio = fields[0].strip().upper()
    if radio not in RADIOS:
        raise ValueError(f"unknown radio {fields[0][:20]!r}")
    changeable_text = fields[10].strip()
    if changeable_text not in ("", "0", "1"):
        raise ValueError(f"changeable {changeable_text[:10]!r} is not 0 or 1")
    # `range` is metres; OpenCelliD writes it as an integer, a few tools as a decimal.
    range_m = float(fields[8])
    if not math.isfinite(range_m) or not 0 <= range_m <= _MAX_INT32:
        raise ValueError(f"range {fields[8][:20]!r} out of range")
    return (
        radio,
        _int(fields[1], 0, 999),
        _int(fields[2], 0, 999),
        _int(fields[3], 0, _MAX_INT32),
        _int(fields[4], 0, _MAX_CELL),
        _opt_int(fields[5]),
        _coord(fields[6], 180.0),
        _coord(fields[7], 90.0),
        round(range_m),
        _opt_int(fields[9], 0),
        None if not changeable_text else changeable_text == "1",
        _opt_int(fields[11], 0, 1 << 40),
        _opt_int(fields[12], 0, 1 << 40),
        _opt_int(fields[13]),
    )


@dataclass(slots=True)
class ImportProgress:
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    bad_rows: int = 0
    bad_examples: list[str] = field(default_factory=list)
    bytes_read: int = 0
    bytes_total: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.rows_read / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def describe(self) -> str:
        pct = f" {100 * self.bytes_read / self.bytes_total:5.1f}%" if self.bytes_total else ""
        return (
            f"cells:{pct} {self.rows_read:,} rows read, {self.inserted:,} new, "
            f"{self.updated:,} updated, {self.bad_rows:,} bad, {self.rate:,.0f} rows/s"
        )


@dataclass(frozen=True, slots=True)
class ImportReport:
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    """Rows that did not change the table: duplicates within the file or older than stored."""
    bad_rows: int
    bad_examples: tuple[str, ...]
    elapsed_s: float

    @property
    def rows_per_s(self) -> float:
        return self.rows_read / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(slots=True)
class _Batch:
    rows: list[StageRow]
    read: int
    bad: int
    bad_examples: list[str]
    bytes_read: int


def _open_text(path: Path) -> tuple[IO[bytes], IO[str]]:
    raw = path.open("rb")
    magic = raw.read(2)
    raw.seek(0)
    binary = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if magic == b"\x1f\x8b" else raw
    # utf-8-sig: a file saved by a spreadsheet starts with a byte order mark, which would
    # otherwise stick to the header's first field and make the header a bad row.
    return raw, io.TextIOWrapper(binary, encoding="utf-8-sig", errors="replace", newline="")


def _batches(path: Path, batch_rows: int) -> Iterator[_Batch]:
    raw, text = _open_text(path)
    with raw, text:
        batch = _Batch([], 0, 0, [], 0)
        line_no = 0
        first = True
        try:
            for line in text:
                line_no += 1
                stripped = line.rstrip("\r\n")
                if not stripped.strip():
                    continue
                fields = stripped.split(",")
                if first:
                    first = False
                    if fields[0].strip().strip('"').lower() == "radio":
                        continue  # header (the first line with content)
                batch.read += 1
                try:
                    batch.rows.append(parse_cell_row(fields))
                except ValueError as exc:
                    batch.bad += 1
                    if len(batch.bad_examples) < MAX_BAD_EXAMPLES:
                        batch.bad_examples.append(f"line {line_no}: {exc}")
                if batch.read >= batch_rows:
                    batch.bytes_read = raw.tell()
                    yield batch
                    batch = _Batch([], 0, 0, [], 0)
        except (OSError, EOFError) as exc:
            # A truncated gzip stream: keep what was read, report the rest as one bad row.
            batch.bad += 1
            batch.bad_examples.append(f"after line {line_no}: file ends early ({exc})")
        batch.bytes_read = raw.tell()
        yield batch


async def import_cells(
    conn: Any,
    path: Path,
    *,
    batch_rows: int = 100_000,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> ImportReport:
    """Streams an OpenCelliD CSV (plain or gzip) into ``cell_towers``.

    ``conn`` is an asyncpg connection. Each batch is its own transaction, or savepoint when the
    connection is already inside one, so an interrupted import keeps the batches it finished
    and re-running it is harmless (upsert).
    """
    size = (await asyncio.to_thread(path.stat)).st_size
    progress = ImportProgress(bytes_total=size)
    await conn.execute(_STAGE_DDL)
    await conn.execute(f"TRUNCATE {_STAGE}")
    batches = _batches(path, batch_rows)
    end = _Batch([], 0, 0, [], 0)

    def pull() -> _Batch:
        return next(batches, end)

    try:
        pending = asyncio.ensure_future(asyncio.to_thread(pull))
        while True:
            batch = await pending
            if batch is end:
                break
            # Parse the next batch while the database takes this one.
            pending = asyncio.ensure_future(asyncio.to_thread(pull))
            progress.rows_read += batch.read
            progress.bad_rows += batch.bad
            room = MAX_BAD_EXAMPLES - len(progress.bad_examples)
            progress.bad_examples.extend(batch.bad_examples[: max(room, 0)])
            progress.bytes_read = batch.bytes_read
            if batch.rows:
                async with conn.transaction():
                    # The batch's sort (DISTINCT ON) fits in memory instead of spilling to disk.
                    await conn.execute("SET LOCAL work_mem = '64MB'")
                    await conn.copy_records_to_table(
                        _STAGE, records=batch.rows, columns=_STAGE_COLUMNS
                    )
                    counts = await conn.fetchrow(_UPSERT)
                    await conn.execute(f"TRUNCATE {_STAGE}")
                progress.inserted += counts["inserted"]
                progress.updated += counts["updated"]
            if on_progress is not None:
                on_progress(progress)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {_STAGE}")
    good = progress.rows_read - progress.bad_rows
    return ImportReport(
        rows_read=progress.rows_read,
        inserted=progress.inserted,
        updated=progress.updated,
        unchanged=good - progress.inserted - progress.updated,
        bad_rows=progress.bad_rows,
        bad_examples=tuple(progress.bad_examples),
        elapsed_s=progress.elapsed_s,
    )


async def raw_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under a SQLAlchemy session (for COPY)."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


@dataclass(frozen=True, slots=True, kw_only=True)
class CellPosition:
    lat: float
    lon: float
    range_m: int
    samples: int | None
    updated: datetime | None


async def find_cell(*, session: AsyncSession, cell: CellGlobalId) -> CellPosition | None:
    """Where the cell table puts a cell, or None when it is not in the table."""
    row = (
        await session.execute(
            select(
                CellTower.lat,
                CellTower.lon,
                CellTower.range_m,
                CellTower.samples,
                CellTower.updated,
            ).where(
                CellTower.radio == cell.radio.value,
                CellTower.mcc == int(cell.mcc),
                CellTower.net == int(cell.mnc),
                CellTower.area == cell.area,
                CellTower.cell == cell.cell,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    return CellPosition(
        lat=row.lat, lon=row.lon, range_m=row.range_m, samples=row.samples, updated=row.updated
    )


CellKey = tuple[str, int, int, int, int]

# One statement for a whole sweep's cells; its text is the same whatever their number.
_FIND_CELLS = text(
    """
SELECT k.radio, k.mcc, k.net, k.area, k.cell, t.lat, t.lon, t.range_m, t.samples, t.updated
FROM unnest(CAST(:radios AS text[]), CAST(:mccs AS integer[]), CAST(:nets AS integer[]),
            CAST(:areas AS integer[]), CAST(:cells AS bigint[])) AS k(radio, mcc, net, area, cell)
JOIN cell_towers t ON t.radio = k.radio AND t.mcc = k.mcc AND t.net = k.net
                  AND t.area = k.area AND t.cell = k.cell
"""
)


def cell_key(cell: CellGlobalId) -> CellKey:
    """The cell table's key of a cell (as :func:`find_cell` looks it up)."""
    return (cell.radio.value, int(cell.mcc), int(cell.mnc), cell.area, cell.cell)


async def find_cells(
    *, session: AsyncSession, cells: Iterable[CellGlobalId]
) -> dict[CellKey, CellPosition]:
    """Where the cell table puts each of ``cells``, by :func:`cell_key`; a cell not in the
    table is not in the answer."""
    keys = sorted({cell_key(c) for c in cells})
    if not keys:
        return {}
    rows = await session.execute(
        _FIND_CELLS,
        {
            "radios": [k[0] for k in keys],
            "mccs": [k[1] for k in keys],
            "nets": [k[2] for k in keys],
            "areas": [k[3] for k in keys],
            "cells": [k[4] for k in keys],
        },
    )
    return {
        (r.radio, r.mcc, r.net, r.area, r.cell): CellPosition(
            lat=r.lat, lon=r.lon, range_m=r.range_m, samples=r.samples, updated=r.updated
        )
        for r in rows
    }
