"""Real 112 calls carrying a PIDF-LO location by value (multipart INVITE, Geolocation: <cid:>)
through the real Asterisk: what res_geolocation makes of each shape
(``${GEOLOC_PROFILE(effective_location)}``, kept in the location's raw payload) and the
``pidf_lo`` location the incident gets from it."""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from siaga112.calls.models import Call
from siaga112.locations.models import Location
from siaga112_sandbox.sipp import SippOperator, run_caller
from tests.e2e.conftest import Stack

EARTH_RADIUS_M = 6_371_008.8
WGS84_2D = 'srsName="urn:ogc:def:crs:EPSG::4326"'
METRES = 'uom="urn:ogc:def:uom:EPSG::9001"'
DEGREES = 'uom="urn:ogc:def:uom:EPSG::9102"'
RADIANS = 'uom="urn:ogc:def:uom:EPSG::9101"'


async def _call_and_wait(
    stack: Stack, scenario: str, keys: dict[str, str] | None = None
) -> tuple[Call, Location]:
    """One real call from the carrier with the given scenario; its call row and the
    ``pidf_lo`` location stored for it (waits up to 20 s)."""
    operator = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(operator.start)
    try:
        number = f"+62812{random.randrange(10**6, 10**7)}"
        result = await asyncio.to_thread(
            run_caller,
            stack.settings,
            scenario,
            caller=number,
            hold_ms=1000,
            timeout=30,
            keys=keys,
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
    assert location.call_id == call.id
    return call, location


def _effective(location: Location) -> str:
    assert location.raw is not None
    value = location.raw["effective_location"]
    assert isinstance(value, str)
    return value


def _device(location_info: str, method: str) -> str:
    return (
        '<dm:device id="handset"><gp:geopriv><gp:location-info>'
        + location_info
        + f"</gp:location-info><gp:usage-rules/><gp:method>{method}</gp:method></gp:geopriv>"
        "<dm:timestamp>2026-01-01T00:00:00Z</dm:timestamp></dm:device>"
    )


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def _destination(lat: float, lon: float, bearing: float, dist: float) -> tuple[float, float]:
    p1, b, d = math.radians(lat), math.radians(bearing), dist / EARTH_RADIUS_M
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
    l2 = math.radians(lon) + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    return math.degrees(p2), math.degrees(l2)


async def test_pidf_lo_call_gives_the_incident_a_pidf_location(stack: Stack) -> None:
    _, location = await _call_and_wait(stack, "caller-112-pidf.xml")
    assert (location.lat, location.lon, location.radius_m) == (-6.28211, 106.97432, 35.0)
    assert location.method == "gps"


SQUARE = "-6.10 106.80 -6.10 106.82 -6.12 106.82 -6.12 106.80 -6.10 106.80"
CIVIC = (
    '<ca:civicAddress xml:lang="id"><ca:country>ID</ca:country><ca:A1>Jawa Barat</ca:A1>'
    "<ca:A2>Kota Bekasi</ca:A2><ca:A3>Bekasi Timur</ca:A3><ca:A4>Margahayu</ca:A4>"
    "<ca:STS>Jl.</ca:STS><ca:RD>Ahmad Yani</ca:RD><ca:HNO>12</ca:HNO><ca:PC>17113</ca:PC>"
    "</ca:civicAddress>"
)


def _arcband(start: str, opening: str, uom: str) -> str:
    return (
        f"<gs:ArcBand {WGS84_2D}><gml:pos>-6.2 106.8</gml:pos>"
        f"<gs:innerRadius {METRES}>1000</gs:innerRadius>"
        f"<gs:outerRadius {METRES}>2000</gs:outerRadius>"
        f"<gs:startAngle {uom}>{start}</gs:startAngle>"
        f"<gs:openingAngle {uom}>{opening}</gs:openingAngle></gs:ArcBand>"
    )


WGS84_3D = 'srsName="urn:ogc:def:crs:EPSG::4979"'
SQUARE_3D = "-6.10 106.80 25 -6.10 106.82 25 -6.12 106.82 25 -6.12 106.80 25 -6.10 106.80 25"
VERTICES = [(-6.10, 106.80), (-6.10, 106.82), (-6.12, 106.82), (-6.12, 106.80)]


@dataclass(frozen=True)
class Case:
    location_info: str
    method: str
    effective: str
    """What ${GEOLOC_PROFILE(effective_location)} must be (res_geolocation's reading)."""


CASES = {
    "point": Case(
        f"<gml:Point {WGS84_2D}><gml:pos>-6.23456 106.99123</gml:pos></gml:Point>",
        "gps",
        'shape="Point",crs="2d",pos="-6.23456 106.99123"',
    ),
    "polygon": Case(
        f"<gml:Polygon {WGS84_2D}><gml:exterior><gml:LinearRing>"
        f"<gml:posList>{SQUARE}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>",
        "Cell",
        f'shape="Polygon",crs="2d",posList="{SQUARE}"',
    ),
    "polygon_3d": Case(
        f"<gml:Polygon {WGS84_3D}><gml:exterior><gml:LinearRing>"
        f"<gml:posList>{SQUARE_3D}</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>",
        "Cell",
        f'shape="Polygon",crs="3d",posList="{SQUARE_3D}"',
    ),
    "civic": Case(
        CIVIC,
        "Manual",
        'lang="id",country="ID",A1="Jawa Barat",A2="Kota Bekasi",A3="Bekasi Timur",'
        'A4="Margahayu",STS="Jl.",RD="Ahmad Yani",HNO="12",PC="17113"',
    ),
    # The same band (bearing 80 to 100, 1 to 2 km) with its angles in degrees and in radians.
    "arcband_degrees": Case(
        _arcband("80", "20", DEGREES),
        "Cell",
        'shape="ArcBand",crs="2d",pos="-6.2 106.8",innerRadius="1000",outerRadius="2000",'
        'startAngle="80 degrees",openingAngle="20 degrees"',
    ),
    "arcband_radians": Case(
        _arcband("1.3962634", "0.3490659", RADIANS),
        "Cell",
        'shape="ArcBand",crs="2d",pos="-6.2 106.8",innerRadius="1000",outerRadius="2000",'
        'startAngle="1.3962634 radians",openingAngle="0.3490659 radians"',
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_pidf_lo_shape_through_asterisk_gives_the_right_location(
    stack: Stack, name: str
) -> None:
    case = CASES[name]
    _, location = await _call_and_wait(
        stack,
        "caller-112-pidf-shape.xml",
        {"elements": _device(case.location_info, case.method)},
    )
    assert _effective(location) == case.effective
    assert location.method == case.method
    if name == "point":
        assert (location.lat, location.lon, location.radius_m) == (-6.23456, 106.99123, None)
    elif name in ("polygon", "polygon_3d"):
        assert location.lat is not None
        assert location.lon is not None
        assert location.lat == pytest.approx(-6.11, abs=1e-6)
        assert location.lon == pytest.approx(106.81, abs=1e-6)
        assert location.radius_m is not None
        assert location.radius_m < 1600  # half the square's diagonal, rounded up
        for lat, lon in VERTICES:
            assert _distance_m(location.lat, location.lon, lat, lon) <= location.radius_m
    elif name == "civic":
        assert (location.lat, location.lon, location.radius_m) == (None, None, None)
        assert location.address == (
            "Jl. Ahmad Yani No. 12, Kel. Margahayu, Kec. Bekasi Timur, Kota Bekasi, "
            "Jawa Barat 17113"
        )
    else:  # both arc bands: the band's own covering circle, not the whole outer circle
        assert location.lat is not None
        assert location.lon is not None
        assert location.radius_m is not None
        assert location.lon > 106.8  # the band points east
        assert location.radius_m < 1000
        for bearing in (80, 90, 100):
            for dist in (1000, 2000):
                corner = _destination(-6.2, 106.8, bearing, dist)
                assert _distance_m(location.lat, location.lon, *corner) <= location.radius_m
