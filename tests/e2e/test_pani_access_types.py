"""Real 112 calls through Asterisk carrying P-Access-Network-Info of every 3GPP access type
(GERAN, UTRAN-FDD, E-UTRAN-FDD/-TDD, NR-FDD/-TDD): the incident gets a network-cell location,
placed with coordinates and radius when the cell is in the imported tower table, and with the
network and area only when it is not."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import and_, delete, or_, select

from siaga112.calls.models import Call
from siaga112.locations.cells import import_cells, raw_connection
from siaga112.locations.models import CellTower, Location
from siaga112_sandbox.sipp import run_caller
from tests.e2e.conftest import Stack
from tests.integration.locations.conftest import HEADER


@dataclass(frozen=True)
class Case:
    pani: str
    access_type: str
    radio: str
    network: str
    mnc: str
    area_kind: str
    area: int
    cell: int
    tower: tuple[float, float, int] | None
    """(lat, lon, range_m) in the imported table; None: a cell the table does not know."""


# Values are written out in decimal beside the hex of each header, as a reader checks them.
CASES = [
    Case(  # Indosat, LAC 0x2B11 = 11025, CI 0x3C21 = 15393
        "3GPP-GERAN; cgi-3gpp=510012B113C21",
        "3GPP-GERAN", "GSM", "Indosat Ooredoo Hutchison", "01", "lac", 11025, 15393,
        (-6.91474, 107.60981, 900),
    ),
    Case(  # XL, LAC 0x0FA0 = 4000, UC-Id 0x1234567 = 19088743 (RNC 0x123, C-Id 0x4567)
        "3GPP-UTRAN-FDD; utran-cell-id-3gpp=510110FA01234567",
        "3GPP-UTRAN-FDD", "UMTS", "XL Axiata", "11", "lac", 4000, 19088743,
        (-7.25747, 112.75209, 700),
    ),
    Case(  # Telkomsel, TAC 0x1F40 = 8000, ECI 0x7A12003 = 128000003 (eNB 500000, cell 3)
        "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=510101F407A12003; network-provided",
        "3GPP-E-UTRAN-FDD", "LTE", "Telkomsel", "10", "tac", 8000, 128000003,
        (-6.23827, 106.97557, 1500),
    ),
    Case(  # Three, TAC 0x2710 = 10000, ECI 0x0ABCDEF = 11259375: not in the table
        "3GPP-E-UTRAN-TDD; utran-cell-id-3gpp=5108927100ABCDEF",
        "3GPP-E-UTRAN-TDD", "LTE", "Indosat Ooredoo Hutchison (Three/H3I)", "89", "tac", 10000,
        11259375, None,
    ),
    Case(  # Telkomsel, TAC 0x00BEEF = 48879, NCI 0x0C0FFE00A = 3237994506
        "3GPP-NR-FDD; utran-cell-id-3gpp=5101000BEEF0C0FFE00A",
        "3GPP-NR-FDD", "NR", "Telkomsel", "10", "tac", 48879, 3237994506,
        (-6.17539, 106.82718, 300),
    ),
    Case(  # IM3, TAC 0x000123 = 291, NCI 0x123456789 = 4886718345: not in the table
        "3GPP-NR-TDD; utran-cell-id-3gpp=51021000123123456789",
        "3GPP-NR-TDD", "NR", "Indosat Ooredoo Hutchison (IM3)", "21", "tac", 291, 4886718345,
        None,
    ),
]  # fmt: skip

# One cell per radio type; the unknown cases share area and network with none of them.
TOWERS = [c for c in CASES if c.tower is not None]


@pytest.fixture(scope="module")
async def tower_table(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[None]:
    path = tmp_path_factory.mktemp("cells") / "cells.csv"
    rows = [
        f"{c.radio},510,{int(c.mnc)},{c.area},{c.cell},0,{c.tower[1]},{c.tower[0]},{c.tower[2]},"
        "12,1,1459813819,1700000000,-90"
        for c in TOWERS
        if c.tower is not None
    ]
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    async with stack.sessionmaker() as session:
        report = await import_cells(await raw_connection(session), path)
        await session.commit()
    assert report.inserted + report.updated == 4
    assert sorted(c.radio for c in TOWERS) == ["GSM", "LTE", "NR", "UMTS"]
    yield
    # The session database is shared with the other tiers: leave no towers behind.
    async with stack.sessionmaker() as session:
        await session.execute(
            delete(CellTower).where(
                or_(
                    *(
                        and_(
                            CellTower.radio == c.radio,
                            CellTower.mcc == 510,
                            CellTower.net == int(c.mnc),
                            CellTower.area == c.area,
                            CellTower.cell == c.cell,
                        )
                        for c in TOWERS
                    )
                )
            )
        )
        await session.commit()


async def _cell_location(stack: Stack, number: str) -> tuple[Call, Location]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        async with stack.sessionmaker() as session:
            call = await session.scalar(select(Call).where(Call.asserted_number == number))
            if call is not None:
                loc = await session.scalar(
                    select(Location).where(
                        Location.call_id == call.id, Location.source == "network_cell"
                    )
                )
                if loc is not None:
                    return call, loc
        await asyncio.sleep(0.1)
    raise AssertionError(f"no network_cell location for the call from {number} within 15 s")


@pytest.mark.usefixtures("tower_table")
@pytest.mark.parametrize("case", CASES, ids=[c.access_type for c in CASES])
async def test_real_call_with_each_access_type_gets_its_cell_location(
    stack: Stack, case: Case
) -> None:
    number = f"+62813{random.randrange(10**6, 10**7)}"
    # Nobody answers: Asterisk answers first and the location comes from the AGI step; the
    # caller hangs up while queued.
    result = await asyncio.to_thread(
        run_caller,
        stack.settings,
        "caller-112.xml",
        caller=number,
        hold_ms=1000,
        timeout=20,
        keys={"pani": case.pani},
    )
    assert result.ok, result.output[-1500:]
    call, loc = await _cell_location(stack, number)
    assert call.pani_raw == case.pani, "the header reached siaga112 as sent"
    assert loc.incident_id == call.incident_id is not None
    assert loc.method == f"cell-{case.radio.lower()}"
    assert loc.raw is not None
    pani = loc.raw["pani"]
    assert (pani["ok"], pani["access_type"]) == (True, case.access_type)
    cell = pani["cell"]
    assert (cell["radio"], cell["mcc"], cell["mnc"], cell["network"]) == (
        case.radio,
        "510",
        case.mnc,
        case.network,
    )
    assert (cell["area_kind"], cell["area"], cell["cell"]) == (case.area_kind, case.area, case.cell)
    if case.tower is not None:
        lat, lon, range_m = case.tower
        assert (loc.lat, loc.lon, loc.radius_m) == (lat, lon, float(max(range_m, 250)))
        assert loc.raw["cell_tower"]["range_m"] == range_m
    else:
        assert (loc.lat, loc.lon, loc.radius_m) == (None, None, None)
        assert loc.raw["cell_tower"] is None
        assert loc.address == (
            f"{case.network}, {case.area_kind.upper()} {case.area}, {case.radio} cell {case.cell}"
        )
