"""A real 112 call carrying a PIDF-LO location by value (multipart INVITE, Geolocation: <cid:>)
through the real Asterisk: the incident gets a ``pidf_lo`` location with the caller's circle."""

from __future__ import annotations

import asyncio
import random
import time

from sqlalchemy import select

from siaga112.calls.models import Call
from siaga112.locations.models import Location
from siaga112.telephony.sipp import SippOperator, run_caller
from tests.e2e.conftest import Stack


async def test_pidf_lo_call_gives_the_incident_a_pidf_location(stack: Stack) -> None:
    operator = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(operator.start)
    try:
        number = f"+62812{random.randrange(10**6, 10**7)}"
        result = await asyncio.to_thread(
            run_caller,
            stack.settings,
            "caller-112-pidf.xml",
            caller=number,
            hold_ms=1000,
            timeout=30,
        )
        assert result.ok, result.output[-1500:]
        deadline = time.monotonic() + 20
        location: Location | None = None
        call: Call | None = None
        while time.monotonic() < deadline and location is None:
            async with stack.sessionmaker() as session:
                call = await session.scalar(
                    select(Call)
                    .where(Call.asserted_number == number)
                    .order_by(Call.offered_at.desc())
                    .limit(1)
                )
                if call is not None and call.incident_id is not None:
                    location = await session.scalar(
                        select(Location).where(
                            Location.incident_id == call.incident_id,
                            Location.source == "pidf_lo",
                        )
                    )
            if location is None:
                await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(operator.stop)
    assert call is not None, "the call was not recorded"
    assert call.geolocation_raw is not None
    assert call.geolocation_raw.startswith("<cid:")
    assert location is not None, "no pidf_lo location on the incident within 20 s"
    assert (location.lat, location.lon, location.radius_m) == (-6.28211, 106.97432, 35.0)
    assert location.method == "gps"
    assert location.call_id == call.id
