"""The location worker's CPU per call without Asterisk (``python -m bench.locderive``): a
database of its own (``siaga112_test_locderive``, dropped after), ``--calls`` calls recorded as
the AGI step records them (a P-Access-Network-Info whose cell is not in the cell table, a
caller number without AML messages: what bench/surge's callers are), then the worker's sweeps
until every call is derived; prints the worker process's CPU ms (and wall ms) per call. Run it
in two checkouts to compare them; PostgreSQL's own CPU is not in it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import make_url

from siaga112.calls.recorder import record_incoming
from siaga112.config import Settings
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.session import make_engine, make_sessionmaker
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
        cpu, wall, done = time.process_time(), time.perf_counter(), 0
        while (swept := await worker.sweep(grace=timedelta(0))) > 0:
            done += swept
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await engine.dispose()
    n = max(1, done)
    return (
        f"derived {done} calls: {cpu * 1000 / n:.2f} ms CPU per call in the worker's process,"
        f" {wall * 1000 / n:.2f} ms wall"
    )


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
