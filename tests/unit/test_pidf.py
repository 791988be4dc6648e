"""SIP Geolocation / PIDF-LO parsing: Asterisk's effective location, PIDF-LO documents of every
shape, civic addresses written the Indonesian way, by-reference URIs; never raises."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siaga112.locations.pidf import (
    MAX_PIDF_CHARS,
    civic_address_text,
    parse_effective_location,
    parse_geolocation_header,
    parse_pidf_lo,
)

ROOT = Path(__file__).resolve().parents[2]

PIDF_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf"'
    ' xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
    ' xmlns:gp="urn:ietf:params:xml:ns:pidf:geopriv10"'
    ' xmlns:gml="http://www.opengis.net/gml"'
    ' xmlns:gs="http://www.opengis.net/pidflo/1.0"'
    ' xmlns:ca="urn:ietf:params:xml:ns:pidf:geopriv10:civicAddr"'
    ' xmlns:con="urn:ietf:params:xml:ns:geopriv:conf"'
    ' entity="sip:+6281234567890@carrier.invalid">'
    '<dm:device id="handset"><gp:geopriv><gp:location-info>'
)


def pidf(location_info: str, method: str = "gps") -> str:
    return (
        PIDF_HEAD
        + location_info
        + f"</gp:location-info><gp:usage-rules/><gp:method>{method}</gp:method></gp:geopriv>"
        "<dm:timestamp>2026-11-23T08:00:00+07:00</dm:timestamp></dm:device></presence>"
    )


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(h))


# -- effective_location -----------------------------------------------------------------------


def test_circle_as_asterisk_reports_it_gives_centre_radius_and_method() -> None:
    # The exact string a real Asterisk 22 gave for sip-conf/caller-112-pidf.xml (DESIGN.md §3).
    loc = parse_effective_location(
        'shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"', "gps"
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.28211, 106.97432, 35.0)
    assert (loc.shape, loc.crs, loc.method) == ("Circle", "2d", "gps")


def test_observed_agi_fixture_decodes_to_the_same_circle() -> None:
    import base64

    lines = (ROOT / "tests/fixtures/agi/incoming-observed-pidf.txt").read_text().splitlines()
    values = dict(line.split(": ", 1) for line in lines if ": " in line)
    effective = base64.b64decode(values["agi_arg_6"]).decode()
    loc = parse_effective_location(effective, values["agi_arg_7"])
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m, loc.method) == (-6.28211, 106.97432, 35.0, "gps")


def test_point_has_no_radius() -> None:
    loc = parse_effective_location('shape="Point",crs="2d",pos="-6.2 106.8"')
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.2, 106.8, None)


def test_point_3d_keeps_altitude() -> None:
    loc = parse_effective_location('shape="Point",crs="3d",pos3d="-6.2 106.8 42.5"')
    assert loc is not None
    assert (loc.lat, loc.lon, loc.altitude_m) == (-6.2, 106.8, 42.5)


@pytest.mark.parametrize(
    "value",
    [
        'shape="Polygon",crs="2d",posList="-6.10 106.80 -6.10 106.82 -6.12 106.82 -6.12 106.80"',
        'shape="Polygon",crs="2d",pos_list="-6.10 106.80 -6.10 106.82 -6.12 106.82 -6.12 106.80"',
        'shape="Polygon",crs="2d",pos="-6.10 106.80",pos="-6.10 106.82",pos="-6.12 106.82",'
        'pos="-6.12 106.80"',
    ],
)
def test_polygon_gives_centroid_and_a_radius_covering_every_vertex(value: str) -> None:
    loc = parse_effective_location(value)
    assert loc is not None
    assert loc.shape == "Polygon"
    assert loc.lat is not None
    assert loc.lon is not None
    assert loc.lat == pytest.approx(-6.11, abs=1e-6)
    assert loc.lon == pytest.approx(106.81, abs=1e-6)
    assert loc.radius_m is not None
    for lat, lon in [(-6.10, 106.80), (-6.10, 106.82), (-6.12, 106.82), (-6.12, 106.80)]:
        assert distance_m(loc.lat, loc.lon, lat, lon) <= loc.radius_m
    assert loc.radius_m < 1600  # half the 2.2 km x 2.2 km square's diagonal, not more


def test_ellipse_radius_is_its_semi_major_axis() -> None:
    loc = parse_effective_location(
        'shape="Ellipse",crs="2d",pos="-6.2 106.8",semiMajorAxis="120",semiMinorAxis="40",'
        'orientation="45 degrees"'
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.2, 106.8, 120.0)


def test_arcband_centre_moves_into_the_band_and_still_covers_it() -> None:
    loc = parse_effective_location(
        'shape="ArcBand",crs="2d",pos="-6.2 106.8",innerRadius="1000",outerRadius="2000",'
        'startAngle="80 degrees",openingAngle="20 degrees"'
    )
    assert loc is not None
    assert loc.lat is not None
    assert loc.lon is not None
    assert loc.radius_m is not None
    assert loc.lon > 106.8  # the band points east (bearing 80..100)
    assert loc.radius_m < 2000  # smaller than the whole outer circle
    # The band's far corners are inside the circle.
    for corner_bearing in (80, 100):
        b = math.radians(corner_bearing)
        d = 2000 / 6_371_008.8
        p1 = math.radians(-6.2)
        p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))
        l2 = math.radians(106.8) + math.atan2(
            math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
        )
        assert distance_m(loc.lat, loc.lon, math.degrees(p2), math.degrees(l2)) <= loc.radius_m


def test_civic_profile_becomes_an_indonesian_address() -> None:
    loc = parse_effective_location(
        'lang="id",country="ID",A1="Jawa Barat",A2="Kota Bekasi",A3="Bekasi Timur",'
        'A4="Margahayu",STS="Jl.",RD="Ahmad Yani",HNO="12",PC="17113"'
    )
    assert loc is not None
    assert loc.lat is None
    assert loc.shape == "civic"
    assert loc.address == (
        "Jl. Ahmad Yani No. 12, Kel. Margahayu, Kec. Bekasi Timur, Kota Bekasi, Jawa Barat 17113"
    )


def test_uri_profile_is_kept_as_a_reference() -> None:
    loc = parse_effective_location('URI="https://lis.operator.invalid/loc/8f2a"')
    assert loc is not None
    assert (loc.shape, loc.reference, loc.lat) == (
        "reference",
        "https://lis.operator.invalid/loc/8f2a",
        None,
    )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "garbage",
        'shape="Circle",crs="2d",pos="-96.0 106.9",radius="35"',  # latitude out of range
        'shape="Circle",crs="2d",pos="nan nan",radius="35"',
        'shape="Hexagon",pos="-6 106"',
        'shape="Circle",crs="2d",radius="35"',
        "x" * 10_000,
    ],
)
def test_unusable_effective_location_gives_none(value: str) -> None:
    assert parse_effective_location(value, "gps") is None


def test_circle_without_radius_keeps_the_centre_and_says_why() -> None:
    loc = parse_effective_location('shape="Circle",crs="2d",pos="-6.2 106.8"')
    assert loc is not None
    assert loc.radius_m is None
    assert any("radius" in p for p in loc.problems)


@settings(max_examples=300)
@given(st.text(max_size=300), st.one_of(st.none(), st.text(max_size=50)))
def test_effective_location_parser_never_raises(value: str, method: str | None) -> None:
    loc = parse_effective_location(value, method)
    if loc is not None and loc.lat is not None:
        assert -90 <= loc.lat <= 90
        assert loc.lon is not None
        assert -180 <= loc.lon <= 180


keys = st.sampled_from(
    [
        "shape",
        "crs",
        "pos",
        "pos3d",
        "posList",
        "radius",
        "semiMajorAxis",
        "innerRadius",
        "outerRadius",
        "startAngle",
        "openingAngle",
        "URI",
        "A1",
    ]
)
values = st.one_of(
    st.sampled_from(SHAPES := ["Circle", "Point", "Polygon", "Ellipse", "ArcBand", "Sphere"]),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=9).map(
        lambda xs: " ".join(str(x) for x in xs)
    ),
    st.text(max_size=20),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(keys, values), max_size=8))
def test_effective_location_parser_never_raises_on_near_valid_input(
    pairs: list[tuple[str, str]],
) -> None:
    text = ",".join(f'{k}="{v}"' for k, v in pairs)
    loc = parse_effective_location(text, "gps")
    if loc is not None and loc.radius_m is not None:
        assert loc.radius_m >= 0
        assert math.isfinite(loc.radius_m)


# -- PIDF-LO documents ------------------------------------------------------------------------


def test_the_sipp_scenarios_pidf_body_parses_to_its_circle() -> None:
    scenario = (ROOT / "sip-conf/caller-112-pidf.xml").read_text()
    start = scenario.index('<?xml version="1.0" encoding="UTF-8"?>\n      <presence')
    end = scenario.index("</presence>") + len("</presence>")
    loc = parse_pidf_lo(scenario[start:end])
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m, loc.method) == (-6.28211, 106.97432, 35.0, "gps")
    assert loc.observed_at is not None
    assert loc.observed_at.year == 2025


def test_pidf_point() -> None:
    loc = parse_pidf_lo(
        pidf(
            '<gml:Point srsName="urn:ogc:def:crs:EPSG::4326">'
            "<gml:pos>-6.91474 107.60981</gml:pos></gml:Point>"
        )
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m, loc.crs) == (-6.91474, 107.60981, None, "2d")
    assert loc.observed_at is not None
    assert loc.observed_at.utcoffset() is not None


def test_pidf_circle_with_confidence() -> None:
    loc = parse_pidf_lo(
        pidf(
            '<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-7.25 112.75</gml:pos>'
            '<gs:radius uom="urn:ogc:def:uom:EPSG::9001">850</gs:radius></gs:Circle>'
            '<con:confidence pdf="normal">68</con:confidence>',
            method="Cell",
        )
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m, loc.confidence, loc.method) == (
        -7.25,
        112.75,
        850.0,
        68,
        "Cell",
    )


def test_pidf_circle_radius_in_an_unknown_unit_is_not_taken_for_metres() -> None:
    loc = parse_pidf_lo(
        pidf(
            '<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-7.25 112.75</gml:pos>'
            '<gs:radius uom="urn:ogc:def:uom:EPSG::9036">2</gs:radius></gs:Circle>'
        )
    )
    assert loc is not None
    assert loc.radius_m is None
    assert loc.problems


def test_pidf_polygon() -> None:
    loc = parse_pidf_lo(
        pidf(
            '<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4326"><gml:exterior><gml:LinearRing>'
            "<gml:posList>-6.10 106.80 -6.10 106.82 -6.12 106.82 -6.12 106.80 -6.10 106.80"
            "</gml:posList></gml:LinearRing></gml:exterior></gml:Polygon>"
        )
    )
    assert loc is not None
    assert loc.shape == "Polygon"
    assert loc.lat == pytest.approx(-6.11, abs=1e-6)
    assert loc.lon == pytest.approx(106.81, abs=1e-6)
    assert loc.radius_m is not None
    assert 1500 < loc.radius_m < 1600


def test_pidf_polygon_of_pos_elements() -> None:
    loc = parse_pidf_lo(
        pidf(
            '<gml:Polygon srsName="urn:ogc:def:crs:EPSG::4326"><gml:exterior><gml:LinearRing>'
            "<gml:pos>-6.10 106.80</gml:pos><gml:pos>-6.10 106.82</gml:pos>"
            "<gml:pos>-6.12 106.81</gml:pos><gml:pos>-6.10 106.80</gml:pos>"
            "</gml:LinearRing></gml:exterior></gml:Polygon>"
        )
    )
    assert loc is not None
    assert loc.lat == pytest.approx(-6.10667, abs=1e-4)


def test_pidf_ellipse_and_arcband() -> None:
    ellipse = parse_pidf_lo(
        pidf(
            '<gs:Ellipse srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.2 106.8</gml:pos>'
            '<gs:semiMajorAxis uom="urn:ogc:def:uom:EPSG::9001">300</gs:semiMajorAxis>'
            '<gs:semiMinorAxis uom="urn:ogc:def:uom:EPSG::9001">100</gs:semiMinorAxis>'
            '<gs:orientation uom="urn:ogc:def:uom:EPSG::9102">30</gs:orientation></gs:Ellipse>'
        )
    )
    assert ellipse is not None
    assert ellipse.radius_m == 300.0
    band = parse_pidf_lo(
        pidf(
            '<gs:ArcBand srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.2 106.8</gml:pos>'
            '<gs:innerRadius uom="urn:ogc:def:uom:EPSG::9001">500</gs:innerRadius>'
            '<gs:outerRadius uom="urn:ogc:def:uom:EPSG::9001">1500</gs:outerRadius>'
            '<gs:startAngle uom="urn:ogc:def:uom:EPSG::9102">0</gs:startAngle>'
            '<gs:openingAngle uom="urn:ogc:def:uom:EPSG::9102">60</gs:openingAngle>'
            "</gs:ArcBand>"
        )
    )
    assert band is not None
    assert band.lat is not None
    assert band.lat > -6.2
    assert band.radius_m is not None
    assert band.radius_m < 1500


def test_pidf_civic_address_alone_and_with_a_shape() -> None:
    civic = (
        '<ca:civicAddress xml:lang="id"><ca:country>ID</ca:country>'
        "<ca:A1>Jawa Timur</ca:A1><ca:A2>Kota Pasuruan</ca:A2><ca:A3>Purworejo</ca:A3>"
        "<ca:A4>Sekargadung</ca:A4><ca:RD>Blandongan</ca:RD><ca:STS>Jl.</ca:STS>"
        "<ca:HNO>7</ca:HNO><ca:HNS>A</ca:HNS><ca:LMK>Masjid Al-Anwar</ca:LMK>"
        "<ca:PC>67117</ca:PC></ca:civicAddress>"
    )
    expected = (
        "Jl. Blandongan No. 7A, dekat Masjid Al-Anwar, Kel. Sekargadung, Kec. Purworejo, "
        "Kota Pasuruan, Jawa Timur 67117"
    )
    only = parse_pidf_lo(pidf(civic, method="Manual"))
    assert only is not None
    assert (only.lat, only.shape, only.address) == (None, "civic", expected)
    both = parse_pidf_lo(
        pidf(
            civic + '<gml:Point srsName="urn:ogc:def:crs:EPSG::4326">'
            "<gml:pos>-7.64 112.90</gml:pos></gml:Point>"
        )
    )
    assert both is not None
    assert (both.lat, both.lon, both.address) == (-7.64, 112.90, expected)


def test_civic_address_keeps_prefixes_already_written() -> None:
    assert civic_address_text(
        {"A4": "Desa Sukamaju", "A3": "Kecamatan Cibitung", "A2": "Kabupaten Bekasi"}
    ) == ("Desa Sukamaju, Kecamatan Cibitung, Kabupaten Bekasi")
    assert civic_address_text({"country": "MY", "A1": "Johor"}) == "Johor, MY"
    assert civic_address_text({}) is None


@pytest.mark.parametrize(
    "document",
    [
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        '"&lol;&lol;&lol;">]><presence xmlns="urn:ietf:params:xml:ns:pidf">&lol2;</presence>',
        '<!DOCTYPE presence SYSTEM "file:///etc/passwd"><presence/>',
        "<presence>" + "x" * (MAX_PIDF_CHARS + 1) + "</presence>",
    ],
)
def test_dtds_entities_and_huge_documents_are_refused(document: str) -> None:
    loc = parse_pidf_lo(document)
    assert loc is not None
    assert loc.lat is None
    assert loc.problems


def test_not_pidf_or_not_xml_gives_none_or_a_reason() -> None:
    assert parse_pidf_lo("<html/>") is None
    assert parse_pidf_lo("") is None
    broken = parse_pidf_lo("<presence><unclosed>")
    assert broken is not None
    assert broken.problems
    assert parse_pidf_lo(b"\xff\xfe\x00junk") is not None


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
def test_pidf_parser_never_raises(document: str | bytes) -> None:
    parse_pidf_lo(document)


@settings(max_examples=200)
@given(st.text(max_size=60), st.text(max_size=60))
def test_pidf_parser_never_raises_on_shapes_with_arbitrary_content(pos: str, radius: str) -> None:
    from xml.sax.saxutils import escape

    parse_pidf_lo(
        pidf(
            f"<gs:Circle><gml:pos>{escape(pos)}</gml:pos>"
            f"<gs:radius>{escape(radius)}</gs:radius></gs:Circle>"
        )
    )


def _document(*elements: str) -> str:
    return PIDF_HEAD.split("<dm:device")[0] + "".join(elements) + "</presence>"


def _element(tag: str, location_info: str, method: str) -> str:
    ident = "handset" if tag == "dm:device" else "t1"
    stamp = "dm:timestamp" if tag != "tuple" else "timestamp"
    return (
        f'<{tag} id="{ident}"><gp:geopriv><gp:location-info>{location_info}</gp:location-info>'
        f"<gp:usage-rules/><gp:method>{method}</gp:method></gp:geopriv>"
        f"<{stamp}>2026-11-23T08:00:00+07:00</{stamp}></{tag}>"
    )


CIVIC_ONLY = (
    '<ca:civicAddress xml:lang="id"><ca:country>ID</ca:country><ca:A1>Jawa Barat</ca:A1>'
    "<ca:A2>Kota Bekasi</ca:A2><ca:A3>Bekasi Timur</ca:A3><ca:RD>Ahmad Yani</ca:RD>"
    "<ca:STS>Jl.</ca:STS><ca:HNO>12</ca:HNO></ca:civicAddress>"
)
CIRCLE = (
    '<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.24 106.99</gml:pos>'
    '<gs:radius uom="urn:ogc:def:uom:EPSG::9001">40</gs:radius></gs:Circle>'
)


def test_civic_device_does_not_hide_the_circle_of_a_later_tuple() -> None:
    loc = parse_pidf_lo(
        _document(_element("dm:device", CIVIC_ONLY, "Manual"), _element("tuple", CIRCLE, "gps"))
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m, loc.shape, loc.method) == (
        -6.24,
        106.99,
        40.0,
        "Circle",
        "gps",
    )
    assert loc.address == "Jl. Ahmad Yani No. 12, Kec. Bekasi Timur, Kota Bekasi, Jawa Barat"


def test_circle_device_and_civic_tuple_are_combined_too() -> None:
    loc = parse_pidf_lo(
        _document(_element("dm:device", CIRCLE, "gps"), _element("tuple", CIVIC_ONLY, "Manual"))
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.24, 106.99, 40.0)
    assert loc.address is not None


def test_a_shape_without_a_usable_position_does_not_hide_a_later_one() -> None:
    broken = (
        '<gs:Circle srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-96 106.99</gml:pos>'
        '<gs:radius uom="urn:ogc:def:uom:EPSG::9001">40</gs:radius></gs:Circle>'
    )
    loc = parse_pidf_lo(
        _document(_element("dm:device", broken, "gps"), _element("tuple", CIRCLE, "Cell"))
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.method) == (-6.24, 106.99, "Cell")
    only_broken = parse_pidf_lo(_document(_element("dm:device", broken, "gps")))
    assert only_broken is not None
    assert only_broken.lat is None
    assert only_broken.problems


# 4 vertices of a ~2 km square at 30 m altitude, closed: 15 numbers as 3D, and 12 without the
# closing vertex (12 divides by 2 and by 3: read as 2D it is 6 nonsense positions).
SQUARE_3D = [(-6.10, 106.80), (-6.10, 106.82), (-6.12, 106.82), (-6.12, 106.80)]
POSLIST_3D_OPEN = " ".join(f"{lat} {lon} 30" for lat, lon in SQUARE_3D)


def _polygon(poslist: str, srs: str = "", dimension: str = "") -> str:
    return (
        f"<gml:Polygon{srs}><gml:exterior><gml:LinearRing>"
        f"<gml:posList{dimension}>{poslist}</gml:posList>"
        "</gml:LinearRing></gml:exterior></gml:Polygon>"
    )


@pytest.mark.parametrize(
    ("srs", "dimension"),
    [
        (' srsName="urn:ogc:def:crs:EPSG::4979"', ""),
        ("", ' srsDimension="3"'),
    ],
)
def test_3d_poslist_is_read_as_3d_positions(srs: str, dimension: str) -> None:
    loc = parse_pidf_lo(pidf(_polygon(POSLIST_3D_OPEN, srs, dimension)))
    assert loc is not None
    assert loc.lat == pytest.approx(-6.11, abs=1e-6)
    assert loc.lon == pytest.approx(106.81, abs=1e-6)
    assert loc.radius_m is not None
    assert loc.radius_m < 1600
    assert loc.altitude_m == 30.0


def test_poslist_of_unstated_dimension_that_fits_2d_and_3d_is_refused_with_a_reason() -> None:
    loc = parse_pidf_lo(pidf(_polygon(POSLIST_3D_OPEN)))
    assert loc is not None
    assert (loc.lat, loc.lon) == (None, None)
    assert any("either 2D or 3D" in p for p in loc.problems)
    # The same through Asterisk: a shape without srsName is crs="unknown".
    assert (
        parse_effective_location(f'shape="Polygon",crs="unknown",posList="{POSLIST_3D_OPEN}"')
        is None
    )


def test_poslist_of_unstated_dimension_is_inferred_when_only_one_fits() -> None:
    closed_3d = POSLIST_3D_OPEN + " -6.10 106.80 30"  # 15 numbers: only 3D
    loc = parse_effective_location(f'shape="Polygon",crs="unknown",posList="{closed_3d}"')
    assert loc is not None
    assert loc.lat == pytest.approx(-6.11, abs=1e-6)
    flat = "-6.10 106.80 -6.10 106.82 -6.12 106.82 -6.12 106.80"  # 8 numbers: only 2D
    loc2 = parse_effective_location(f'shape="Polygon",crs="unknown",posList="{flat}"')
    assert loc2 is not None
    assert loc2.lon == pytest.approx(106.81, abs=1e-6)


def test_poslist_that_contradicts_its_crs_is_refused() -> None:
    # crs 2d but an odd count: not silently re-read as 3D.
    odd = "-6.10 106.80 30 -6.10 106.82 30 -6.12 106.82 30"
    loc = parse_effective_location(f'shape="Polygon",crs="2d",posList="{odd}"')
    assert loc is None


def test_covering_radius_over_the_limit_gives_no_point() -> None:
    huge = "-60 0 -60 90 60 90 60 0 -60 0"  # a quarter of the globe
    loc = parse_pidf_lo(pidf(_polygon(huge, ' srsName="urn:ogc:def:crs:EPSG::4326"')))
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m) == (None, None, None)
    assert any("over" in p for p in loc.problems)
    assert parse_effective_location(f'shape="Polygon",crs="2d",posList="{huge}"') is None


def test_arcband_angles_in_radians_as_asterisk_labels_them_give_the_same_band() -> None:
    band = (
        'shape="ArcBand",crs="2d",pos="-6.2 106.8",innerRadius="1000",outerRadius="2000",'
        "startAngle={start},openingAngle={opening}"
    )
    degrees = parse_effective_location(band.format(start='"80 degrees"', opening='"20 degrees"'))
    radians = parse_effective_location(
        band.format(start='"1.3962634 radians"', opening='"0.3490659 radians"')
    )
    assert degrees is not None
    assert radians is not None
    assert radians.lat == pytest.approx(degrees.lat, abs=1e-6)
    assert radians.lon == pytest.approx(degrees.lon, abs=1e-6)
    assert radians.radius_m == pytest.approx(degrees.radius_m, abs=0.2)


def test_arcband_angles_in_an_unknown_unit_give_the_whole_outer_circle() -> None:
    loc = parse_pidf_lo(
        pidf(
            '<gs:ArcBand srsName="urn:ogc:def:crs:EPSG::4326"><gml:pos>-6.2 106.8</gml:pos>'
            '<gs:innerRadius uom="urn:ogc:def:uom:EPSG::9001">500</gs:innerRadius>'
            '<gs:outerRadius uom="urn:ogc:def:uom:EPSG::9001">1500</gs:outerRadius>'
            '<gs:startAngle uom="urn:ogc:def:uom:EPSG::9105">0</gs:startAngle>'
            '<gs:openingAngle uom="urn:ogc:def:uom:EPSG::9105">60</gs:openingAngle>'
            "</gs:ArcBand>"
        )
    )
    assert loc is not None
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.2, 106.8, 1500.0)
    assert loc.problems


# -- Geolocation header -----------------------------------------------------------------------


def test_geolocation_header_by_value_and_by_reference() -> None:
    refs = parse_geolocation_header(
        "<cid:loc-1@carrier.invalid>, <https://lis.operator.invalid/x>;inserted-by=sbc, "
        "<sip:loc@lis.operator.invalid>"
    )
    assert [(r.scheme, r.by_value, r.fetchable) for r in refs] == [
        ("cid", True, False),
        ("https", False, True),
        ("sip", False, False),
    ]


@given(st.text(max_size=200))
def test_geolocation_header_parser_never_raises(value: str) -> None:
    parse_geolocation_header(value)
