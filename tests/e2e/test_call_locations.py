"""A real 112 call through Asterisk whose carrier sends a cell in P-Access-Network-Info: with
the cell imported into the tower table, the incident shows a network-cell location with
coordinates and radius, in its history and as its best location through the API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import time
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.models import Call
from siaga112.config import AmlSenderSettings
from siaga112.locations.cells import import_cells, raw_connection
from siaga112.locations.models import CellTower, Location
from siaga112_sandbox.sipp import SippOperator, run_caller
from tests.e2e.conftest import Stack

# sip-conf/caller-112.xml: 3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E
# = Telkomsel (510-10), TAC 0x00A1 = 161, ECI 0xB2C3D4E = 187448654.
CSV = (
    "radio,mcc,net,area,cell,unit,lon,lat,range,samples,changeable,created,updated,"
    "averageSignal\n"
    "LTE,510,10,161,187448654,0,106.97432,-6.28211,1200,15,1,1459813819,1700000000,-95\n"
    "GSM,510,1,4666,17767,0,106.8,-6.2,800,3,1,1459813819,1700000000,0\n"
)


@pytest.fixture
async def cell_table(stack: Stack, tmp_path: Path) -> AsyncIterator[None]:
    path = tmp_path / "cells.csv"
    path.write_text(CSV)
    async with stack.sessionmaker() as session:
        report = await import_cells(await raw_connection(session), path)
        await session.commit()
    assert report.inserted + report.updated == 2
    yield
    # The session database is shared with the other tiers: leave no towers behind.
    async with stack.sessionmaker() as session:
        await session.execute(delete(CellTower).where(CellTower.mcc == 510))
        await session.commit()


@pytest.fixture
async def operator(stack: Stack) -> AsyncIterator[SippOperator]:
    op = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(op.start)
    yield op
    await asyncio.to_thread(op.stop)


async def _cell_location(stack: Stack, number: str) -> tuple[Call, Location]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with stack.sessionmaker() as session:
            row = await session.scalar(select(Call).where(Call.asserted_number == number))
            if row is not None:
                loc = await session.scalar(
                    select(Location).where(
                        Location.call_id == row.id, Location.source == "network_cell"
                    )
                )
                if loc is not None:
                    return row, loc
        await asyncio.sleep(0.2)
    raise AssertionError("no network_cell location for the call within 20 s")


@pytest.mark.usefixtures("cell_table")
async def test_real_call_with_cell_header_shows_tower_location_with_radius(
    stack: Stack, operator: SippOperator
) -> None:
    number = f"+62812{random.randrange(10**6, 10**7)}"
    result = await asyncio.to_thread(
        run_caller, stack.settings, "caller-112.xml", caller=number, hold_ms=1000, timeout=30
    )
    assert result.ok, result.output[-1500:]
    call, loc = await _cell_location(stack, number)
    assert loc.incident_id == call.incident_id
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.28211, 106.97432, 1200.0)
    assert loc.method == "cell-lte"
    assert loc.raw is not None
    assert loc.raw["pani"]["cell"]["network"] == "Telkomsel"

    async with stack.sessionmaker() as session:
        key = await create_key(
            session=session, name="e2e-locations", role=Role.OPERATOR, actor=system_actor("e2e")
        )
        await session.commit()
    app = create_app(stack.settings, sessionmaker=stack.sessionmaker)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://siaga112.test"
    ) as client:
        headers = {"Authorization": f"Bearer {key.raw}"}
        detail = (await client.get(f"/v1/incidents/{call.incident_id}", headers=headers)).json()
        history = (
            await client.get(f"/v1/incidents/{call.incident_id}/locations", headers=headers)
        ).json()
    best = detail["best_location"]["location"]
    assert (best["source"], best["lat"], best["lon"], best["radius_m"]) == (
        "network_cell",
        -6.28211,
        106.97432,
        1200.0,
    )
    assert [i["id"] for i in history["items"]] == [str(loc.id)]
    assert "location_added" in [e["kind"] for e in detail["timeline"]]


AML_SECRET = "e2e-aml-relay-secret"


def _signed_aml(number: str, at: datetime) -> bytes:
    """An AML HTTPS message (Android ELS fields) for ``number``, GNSS fix of 15 m, signed."""
    stamp = str(int(at.timestamp() * 1000))
    body = urllib.parse.urlencode(
        {
            "v": "1",
            "emergency_number": "112",
            "source": "call",
            "time": stamp,
            "location_latitude": "-6.28190",
            "location_longitude": "106.97455",
            "location_time": stamp,
            "location_accuracy": "15",
            "location_confidence": "0.68",
            "location_source": "gps",
            "device_number": number,
            "cell_network_mcc": "510",
            "cell_network_mnc": "10",
        }
    ).encode()
    mac = hmac.new(AML_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body + b"&hmac=" + mac.encode()


@pytest.mark.usefixtures("cell_table")
async def test_aml_after_the_real_call_refines_its_cell_location(
    stack: Stack, operator: SippOperator, engine: AsyncEngine
) -> None:
    """The issue's "done when": a real call with a cell header shows a location with
    coordinates and radius from the imported cell table; an AML message sent after the call
    refines it; both are in the incident's location history."""
    number = f"+62812{random.randrange(10**6, 10**7)}"
    result = await asyncio.to_thread(
        run_caller, stack.settings, "caller-112.xml", caller=number, hold_ms=1000, timeout=30
    )
    assert result.ok, result.output[-1500:]
    call, cell = await _cell_location(stack, number)
    assert (cell.lat, cell.lon, cell.radius_m) == (-6.28211, 106.97432, 1200.0)

    # The AML relay is a configured sender; its secret lives in the settings only.
    senders = {"relay": AmlSenderSettings(secrets=[SecretStr(AML_SECRET)])}
    settings = stack.settings.model_copy(
        update={"locations": stack.settings.locations.model_copy(update={"aml_senders": senders})}
    )
    async with stack.sessionmaker() as session:
        key = await create_key(
            session=session, name="e2e-aml", role=Role.OPERATOR, actor=system_actor("e2e")
        )
        await session.commit()
    app = create_app(settings, engine=engine, sessionmaker=stack.sessionmaker)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://siaga112.test"
    ) as client:
        forged = await client.post(
            "/aml/v1/https",
            content=_signed_aml(number, datetime.now(UTC))[:-4] + b"0000",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert forged.status_code == 401, forged.text
        sent = await client.post(
            "/aml/v1/https",
            content=_signed_aml(number, datetime.now(UTC)),
            headers={"Content-Type": "application/x-www-form-urlencoded", "X-AML-Sender": "relay"},
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "matched", "matched to the call just ended"
        headers = {"Authorization": f"Bearer {key.raw}"}
        detail = (await client.get(f"/v1/incidents/{call.incident_id}", headers=headers)).json()
        history = (
            await client.get(f"/v1/incidents/{call.incident_id}/locations", headers=headers)
        ).json()

    best = detail["best_location"]["location"]
    assert (best["source"], best["lat"], best["lon"], best["radius_m"]) == (
        "aml_https",
        -6.2819,
        106.97455,
        15.0,
    )
    assert best["radius_m"] < cell.radius_m
    assert best["call_id"] == str(call.id)
    items = {i["source"]: i for i in history["items"]}
    assert set(items) == {"network_cell", "aml_https"}
    assert len(history["items"]) == 2
    assert items["network_cell"]["id"] == str(cell.id)
    assert items["network_cell"]["radius_m"] == 1200.0
    added = [e for e in detail["timeline"] if e["kind"] == "location_added"]
    assert len(added) == 2
