"""Cell-tower benchmark: import rate and lookup latency with a million cells
(``python -m bench.locations``).

1. Writes a synthetic OpenCelliD CSV (gzip by default, as OpenCelliD ships it) of ``--cells``
   rows into a temporary directory: Indonesian networks, the radio mix of a current export
   (mostly LTE), unique keys, positions inside Indonesia, plus a share of bad rows that the
   import must count and skip.
2. Imports it with ``siaga112.locations.cells.import_cells`` (the ``siaga112 cells import``
   path: streaming, COPY into a staging table, upsert) into a database of its own
   (``siaga112_bench_locations``, dropped and re-created), and reports rows/s.
3. Looks up ``--lookups`` cells one at a time through a SQLAlchemy session, as a call's
   location derivation does (``find_cell``), 90 % known and 10 % unknown, after a short warm-up,
   and reports p50/p99/max; also the cost of parsing a P-Access-Network-Info header.

Bounded: generation and import are linear in ``--cells``; the lookup phase stops at
``--max-lookup-s`` seconds whatever ``--lookups`` says. The database is dropped at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.db.manage import connect, drop_database, upgrade
from siaga112.locations.cells import ImportProgress, find_cell, import_cells
from siaga112.locations.pani import CellGlobalId, parse_pani
from siaga112.metrics import quantile

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/siaga112_bench_locations"
HEADER = (
    "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal"
)
NETS = (1, 8, 9, 10, 11, 21, 28, 89)
RADIOS = (("LTE", 0.62), ("GSM", 0.14), ("UMTS", 0.14), ("NR", 0.10))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _cell_id(radio: str, rng: random.Random, serial: int) -> int:
    # Unique per (radio, net, area) through the serial; shaped like the real identity.
    if radio == "GSM":
        return serial % 65536
    if radio == "UMTS":
        return (rng.randrange(1, 4096) << 16) | (serial % 65536)
    if radio == "LTE":
        return (serial << 8) | rng.randrange(0, 256)
    return (serial << 12) | rng.randrange(0, 4096)


def generate(path: Path, cells: int, *, bad_every: int, seed: int, gz: bool) -> list[str]:
    """Writes the CSV; returns a sample of PANI headers for cells that are in it."""
    rng = random.Random(seed)
    weights = [w for _, w in RADIOS]
    names = [r for r, _ in RADIOS]
    sample: list[str] = []
    sample_every = max(1, cells // 50_000)
    opener: Any = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write(HEADER + "\n")
        lines: list[str] = []
        for i in range(cells):
            if bad_every and i % bad_every == bad_every - 1:
                lines.append(f"LTE,510,10,{i},not-a-number,0,106.8,-6.2,1000,1,1,0,0,0")
                continue
            radio = rng.choices(names, weights)[0]
            net = NETS[i % len(NETS)]
            area = 1 + (i // 4096) % 60000 if radio in ("GSM", "UMTS") else 1 + (i // 4096)
            cell = _cell_id(radio, rng, i // len(NETS))
            lat = rng.uniform(-10.9, 5.9)
            lon = rng.uniform(95.0, 141.0)
            rng_m = rng.choice((150, 400, 800, 1500, 3000, 6000))
            lines.append(
                f"{radio},510,{net},{area},{cell},0,{lon:.6f},{lat:.6f},{rng_m},"
                f"{rng.randrange(1, 400)},1,1459813819,{1700000000 + i},-90"
            )
            if i % sample_every == 0:
                sample.append(_pani_for(radio, net, area, cell))
            if len(lines) >= 50_000:
                fh.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            fh.write("\n".join(lines) + "\n")
    return sample


def _pani_for(radio: str, net: int, area: int, cell: int) -> str:
    plmn = f"510{net:02d}"
    if radio == "GSM":
        return f"3GPP-GERAN; cgi-3gpp={plmn}{area:04X}{cell:04X}"
    if radio == "UMTS":
        return f"3GPP-UTRAN-FDD; utran-cell-id-3gpp={plmn}{area:04X}{cell:07X}"
    if radio == "LTE":
        return f"3GPP-E-UTRAN-FDD; utran-cell-id-3gpp={plmn}{area:04X}{cell:07X}"
    return f"3GPP-NR-FDD; utran-cell-id-3gpp={plmn}{area:06X}{cell:09X}"


async def _import(url: str, path: Path) -> dict[str, Any]:
    conn = await connect(url)
    last = [0.0]

    def show(p: ImportProgress) -> None:
        if time.perf_counter() - last[0] > 2:
            last[0] = time.perf_counter()
            log(p.describe())

    try:
        report = await import_cells(conn, path, on_progress=show)
        table_bytes = await conn.fetchval("SELECT pg_total_relation_size('cell_towers')")
    finally:
        await conn.close()
    return {
        "rows_read": report.rows_read,
        "inserted": report.inserted,
        "bad_rows": report.bad_rows,
        "seconds": round(report.elapsed_s, 2),
        "rows_per_s": round(report.rows_per_s),
        "table_mb": round(table_bytes / 2**20, 1),
    }


async def _lookups(url: str, headers: list[str], n: int, max_s: float) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    rng = random.Random(7)
    cells: list[CellGlobalId] = []
    parse_times: list[float] = []
    for header in headers:
        t = time.perf_counter()
        parsed = parse_pani(header)
        parse_times.append(time.perf_counter() - t)
        assert parsed.cell is not None, header
        cells.append(parsed.cell)
    unknown = [
        c
        for i in range(500)
        if (c := parse_pani(_pani_for("LTE", 10, 65000, (i << 8) | 1)).cell) is not None
    ]
    engine = create_async_engine(url, pool_size=2)
    times: list[float] = []
    found = 0
    try:
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session:
            for cell in cells[:200]:  # warm-up: connection, statement cache
                await find_cell(session=session, cell=cell)
            deadline = time.perf_counter() + max_s
            for i in range(n):
                cell = rng.choice(unknown) if i % 10 == 9 else rng.choice(cells)
                t = time.perf_counter()
                position = await find_cell(session=session, cell=cell)
                times.append(time.perf_counter() - t)
                found += position is not None
                if time.perf_counter() > deadline:
                    break
    finally:
        await engine.dispose()
    times.sort()
    parse_times.sort()

    def ms(v: float | None) -> float:
        return round((v or 0.0) * 1000, 3)

    return {
        "lookups": len(times),
        "found": found,
        "p50_ms": ms(quantile(times, 0.5)),
        "p99_ms": ms(quantile(times, 0.99)),
        "max_ms": ms(times[-1] if times else None),
        "pani_parse_p50_us": round((quantile(parse_times, 0.5) or 0.0) * 1e6, 1),
        "pani_parse_p99_us": round((quantile(parse_times, 0.99) or 0.0) * 1e6, 1),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    url: str = args.database_url
    asyncio.run(drop_database(url))
    upgrade(url)
    result: dict[str, Any] = {"cells": args.cells, "gzip": not args.plain}
    with tempfile.TemporaryDirectory(prefix="siaga112-cells-") as tmp:
        path = Path(tmp) / ("cells.csv" if args.plain else "cells.csv.gz")
        log(f"generating {args.cells:,} cells into {path}")
        t = time.perf_counter()
        headers = generate(
            path, args.cells, bad_every=args.bad_every, seed=args.seed, gz=not args.plain
        )
        result["generate_s"] = round(time.perf_counter() - t, 1)
        result["file_mb"] = round(os.path.getsize(path) / 2**20, 1)
        log(f"importing {result['file_mb']} MB")
        result["import"] = asyncio.run(_import(url, path))
    log(f"{args.lookups:,} lookups")
    result["lookup"] = asyncio.run(_lookups(url, headers, args.lookups, args.max_lookup_s))
    if not args.keep:
        asyncio.run(drop_database(url))
    return result


def report(r: dict[str, Any]) -> str:
    imp, lk = r["import"], r["lookup"]
    return "\n".join(
        [
            f"cells: {r['cells']:,} synthetic OpenCelliD rows ({'gzip' if r['gzip'] else 'plain'},"
            f" {r['file_mb']} MB)",
            f"import: {imp['rows_read']:,} rows in {imp['seconds']} s"
            f" = {imp['rows_per_s']:,} rows/s"
            f" ({imp['inserted']:,} stored, {imp['bad_rows']:,} bad rows counted;"
            f" table {imp['table_mb']} MB)",
            f"lookup: {lk['lookups']:,} one at a time ({lk['found']:,} found):"
            f" p50 {lk['p50_ms']} ms, p99 {lk['p99_ms']} ms, max {lk['max_ms']} ms",
            f"PANI parse: p50 {lk['pani_parse_p50_us']} us, p99 {lk['pani_parse_p99_us']} us",
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.locations", description=__doc__)
    p.add_argument("--cells", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=20_000)
    p.add_argument("--max-lookup-s", type=float, default=60.0)
    p.add_argument("--bad-every", type=int, default=10_000, help="one bad row per N (0: none)")
    p.add_argument("--plain", action="store_true", help="plain CSV instead of gzip")
    p.add_argument("--seed", type=int, default=112)
    p.add_argument("--database-url", default=DEFAULT_URL)
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
