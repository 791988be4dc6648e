"""Helpers for location tests: a cell table written from rows, calls recorded as AGI does."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from siaga112.calls.recorder import RecordedCall, record_incoming
from siaga112.runtime.telephony import Telephony
from tests.factories import call_facts

HEADER = (
    "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,averageSignal"
)
# The cell in sip-conf/caller-112.xml's PANI: 510-10, TAC 0x00A1, ECI 0xB2C3D4E.
TEST_CELL = "LTE,510,10,161,187448654,0,106.97432,-6.28211,1200,15,1,1459813819,1700000000,-95"
TEST_PANI = "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"


def write_csv(path: Path, lines: list[str], *, gz: bool = False, header: bool = True) -> Path:
    text = "\n".join(([HEADER] if header else []) + lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


async def driver(connection: AsyncConnection) -> Any:
    """The asyncpg connection under the test's transaction. A statement through SQLAlchemy first,
    so that the (lazily begun) transaction exists and the import's own transactions nest in it
    as savepoints and are rolled back with the test."""
    await connection.execute(text("SELECT 1"))
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def record_call(
    session: AsyncSession,
    uniqueid: str,
    *,
    pani: str | None = TEST_PANI,
    geoloc_effective: str | None = None,
) -> RecordedCall:
    facts = call_facts(
        uniqueid,
        presentation="allowed_not_screened",
        pani=pani,
        geolocation="<cid:loc@carrier.invalid>" if geoloc_effective else None,
        geoloc_effective=geoloc_effective,
        geoloc_method="gps" if geoloc_effective else None,
    )
    return await record_incoming(session=session, facts=facts, at=datetime.now(UTC))


def inline_tasks(telephony: Telephony) -> frozenset[asyncio.Task[None]]:
    """The location derivations a telephony runtime (derive_in=inline) is running now."""
    assert telephony.locations is not None, "inline location derivation is configured"
    return telephony.locations.tasks
