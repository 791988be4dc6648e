"""The location worker's CPU per call without Asterisk (``python -m bench.locderive``): a
database of its own (``siaga112_test_locderive``, dropped after), ``--calls`` calls recorded as
the AGI step records them (a P-Access-Network-Info whose cell is not in the cell table, a
caller number without AML messages: what bench/surge's callers are), then the worker's sweeps
until every call is derived; prints the worker process's CPU ms (and wall ms) per call, the
CPU ms per call of the PostgreSQL backends serving it (read from ``/proc``: run it on the
database's machine, as a user who may read them), the SQL statements per call, and how many
location rows the calls got (one each). Run it in two checkouts to compare them (or run this
file against another checkout's code with ``PYTHONPATH=<checkout>/src``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.cpu import proc_cpu_s
from siaga112.calls.recorder import record_incoming
from siaga112.config import Settings
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.session import make_engine, make_sessionmaker
from siaga112.locations.models import Location
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics
from siaga112.telephony.facts import facts_from_env

PANI = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"


async def _run(database_url: str, calls: int) -> str:
    settings = Settings(database_url=database_url)
    engine = make_engine(settings)
    sessionmaker = make_sessionmaker(engine)
    worker = LocationWorker(settings=settings, sessionmaker=sessionmaker, metrics=Metrics())
    try:
        for i in range(calls):
            env = {
                "agi_uniqueid": f"1800000000.{i}",
                "agi_linkedid": f"1800000000.{i}",
                "agi_channel": "PJSIP/carrier-1",
                "agi_callerid": f"+62812{i:07d}",
                "agi_calleridname": "bench",
                "agi_arg_1": "112",
                "agi_arg_3": base64.b64encode(PANI.encode()).decode(),
            }
            async with sessionmaker() as session:
                await record_incoming(
                    session=session, facts=facts_from_env(env), at=datetime.now(UTC)
                )
                await session.commit()
        statements = 0

        def count(*_: object) -> None:
            nonlocal statements
            statements += 1

        backends_before = await _backends_cpu(sessionmaker)
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        cpu, wall, done = time.process_time(), time.perf_counter(), 0
        while (swept := await worker.sweep(grace=timedelta(0))) > 0:
            done += swept
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        event.remove(engine.sync_engine, "before_cursor_execute", count)
        backends_after = await _backends_cpu(sessionmaker)
        pg = sum(v - backends_before.get(pid, 0.0) for pid, v in backends_after.items())
        async with sessionmaker() as session:
            located = await session.scalar(select(func.count()).select_from(Location)) or 0
    finally:
        await engine.dispose()
    n = max(1, done)
    return (
        f"derived {done} calls: {cpu * 1000 / n:.2f} ms CPU per call in the worker's process,"
        f" {pg * 1000 / n:.2f} ms in its PostgreSQL backends, {wall * 1000 / n:.2f} ms wall;"
        f" {statements / n:.2f} statements per call; {located} location rows"
    )


async def _backends_cpu(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[int, float]:
    """CPU seconds so far of each backend connected to the bench's database (the pool's)."""
    async with sessionmaker() as session:
        pids = (
            await session.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        ).all()
    return {pid: cpu for pid in pids if (cpu := proc_cpu_s(pid, children=False)) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.locderive", description=__doc__)
    p.add_argument("--calls", type=int, default=600)
    args = p.parse_args(argv)
    url = (
        make_url(Settings().database_url_str)
        .set(database="siaga112_test_locderive")
        .render_as_string(hide_password=False)
    )
    asyncio.run(drop_database(url))
    upgrade(url)
    try:
        print(asyncio.run(_run(url, args.calls)), flush=True)
    finally:
        asyncio.run(drop_database(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
