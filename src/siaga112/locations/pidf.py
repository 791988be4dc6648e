"""SIP Geolocation and PIDF-LO (RFC 6442, RFC 4119, RFC 5491, RFC 5139) to a caller location.

Pure parsing, no I/O; nothing here raises on any input. Three inputs reach siaga112:

1. Asterisk's own reading of a by-value PIDF-LO, ``${GEOLOC_PROFILE(effective_location)}``
   (res_geolocation: its XSLT turns the body into a variable list; DESIGN.md §3)::

       shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"

   Shapes and their variables as res_geolocation names them (``geoloc_gml.c``): Point (pos),
   Polygon (several pos, or posList/pos_list), Circle (pos, radius), Ellipse (pos,
   semiMajorAxis, semiMinorAxis, orientation), ArcBand (pos, innerRadius, outerRadius,
   startAngle, openingAngle), Sphere (pos3d, radius), Ellipsoid (pos3d, semi axes,
   verticalAxis, orientation), Prism (pos3d list, height). Angles carry a unit after a space
   (``"45 degrees"``). A civic-address profile gives ``lang="id",country="ID",A1="..."``; a
   by-reference profile gives ``URI="https://..."``. See :func:`parse_effective_location`.
2. The PIDF-LO XML itself (:func:`parse_pidf_lo`), for deployments that receive the body some
   other way: ``gml:Point``, ``gs:Circle`` (radius in metres, EPSG::9001), ``gml:Polygon``,
   ``gs:Ellipse``, ``gs:ArcBand``, ``gs:Sphere``, ``gs:Ellipsoid``, ``gs:Prism`` and
   ``ca:civicAddress``.
3. The raw ``Geolocation`` header (:func:`parse_geolocation_header`): ``<cid:...>`` means the
   location came by value (Asterisk resolved it); ``<https:...>``/``<sip:...>`` is by reference
   and is kept raw; siaga112 dereferences an http(s) reference only when configured
   (``SIAGA112_LOCATIONS__FETCH_GEOLOCATION_BY_REFERENCE``, default off).

Every shape becomes one centre and one radius that covers the whole shape (a polygon's
centroid and its farthest vertex, an ellipse's semi-major axis, an arc band's mid point and its
farthest corner): the operator sees a circle that contains the caller, never one that is too
small. Coordinates are WGS 84 latitude then longitude (EPSG 4326/4979 axis order).

Civic addresses are written the Indonesian way, from the street up to the province::

    Jl. Ahmad Yani No. 12, Kel. Margahayu, Kec. Bekasi Timur, Kota Bekasi, Jawa Barat 17113

XML safety: documents over :data:`MAX_PIDF_CHARS`, and any document type declaration
(``<!DOCTYPE``, ``<!ENTITY``: the only way to declare entities, so no entity expansion can
happen) are refused before the parser sees them.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_EFFECTIVE_CHARS",
    "MAX_PIDF_CHARS",
    "GeolocationRef",
    "ParsedLocation",
    "civic_address_text",
    "parse_effective_location",
    "parse_geolocation_header",
    "parse_pidf_lo",
]

MAX_EFFECTIVE_CHARS = 8000
MAX_PIDF_CHARS = 64 * 1024
MAX_METHOD_CHARS = 40
MAX_ADDRESS_CHARS = 500
# Larger than any shape a network would send for a caller (a continent); beyond it is junk.
MAX_RADIUS_M = 5_000_000.0
MAX_VERTICES = 1000
EARTH_RADIUS_M = 6_371_008.8
ARC_SAMPLES = 16

SHAPES = ("Point", "Circle", "Polygon", "Ellipse", "ArcBand", "Sphere", "Ellipsoid", "Prism")
_SHAPES_BY_LOWER = {s.lower(): s for s in SHAPES}


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedLocation:
    """One caller location from SIP Geolocation / PIDF-LO. Any field may be None."""

    lat: float | None = None
    lon: float | None = None
    radius_m: float | None = None
    """Radius of a circle around (lat, lon) that covers the whole shape; None for a Point."""
    altitude_m: float | None = None
    confidence: int | None = None
    """Percent (RFC 7459), only when the sender stated it."""
    method: str | None = None
    """How the device found it (``gps``, ``Cell``, ``Manual`` ...), as sent."""
    shape: str | None = None
    """Point, Circle, Polygon, Ellipse, ArcBand, Sphere, Ellipsoid, Prism; ``civic`` or
    ``reference`` when there are no coordinates."""
    crs: str | None = None
    address: str | None = None
    """A civic address written out for people; None without one."""
    civic: Mapping[str, str] = field(default_factory=dict)
    reference: str | None = None
    """A by-reference location URI (http, https, sip, sips, pres), kept raw."""
    observed_at: datetime | None = None
    problems: tuple[str, ...] = ()

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, as kept in a location's raw payload."""
        return {
            "lat": self.lat,
            "lon": self.lon,
            "radius_m": self.radius_m,
            "altitude_m": self.altitude_m,
            "confidence": self.confidence,
            "method": self.method,
            "shape": self.shape,
            "crs": self.crs,
            "address": self.address,
            "civic": dict(self.civic),
            "reference": self.reference,
            "observed_at": self.observed_at.isoformat() if self.observed_at else None,
            "problems": list(self.problems),
        }


# -- geometry ---------------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _valid_point(lat: float, lon: float) -> bool:
    return math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _destination(lat: float, lon: float, bearing_deg: float, dist_m: float) -> tuple[float, float]:
    p1, l1 = math.radians(lat), math.radians(lon)
    b, d = math.radians(bearing_deg), dist_m / EARTH_RADIUS_M
    p2 = math.asin(
        max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b)))
    )
    l2 = l1 + math.atan2(
        math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2)
    )
    lon2 = (math.degrees(l2) + 540.0) % 360.0 - 180.0
    return math.degrees(p2), lon2


def _centroid(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Area centroid of a ring in a local flat projection (fine at a city's scale), the vertex
    mean when the ring has no area."""
    lat0, lon0 = points[0]
    k = math.cos(math.radians(lat0))
    xy = [((lon - lon0) * k, lat - lat0) for lat, lon in points]
    area = cx = cy = 0.0
    for (x1, y1), (x2, y2) in zip(xy, xy[1:] + xy[:1], strict=True):
        cross = x1 * y2 - x2 * y1
        area += cross
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    if abs(area) < 1e-18 or k < 1e-9:
        return (
            sum(p[0] for p in points) / len(points),
            sum(p[1] for p in points) / len(points),
        )
    area /= 2
    return lat0 + cy / (6 * area), lon0 + cx / (6 * area) / k


def _covering(points: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
    lat, lon = _centroid(points)
    radius = max(_distance_m(lat, lon, p[0], p[1]) for p in points)
    return lat, lon, _round_up(radius)


def _round_up(radius: float) -> float:
    # One decimal, never below the exact value: the circle must still cover the shape.
    return math.ceil(radius * 10) / 10


# -- number parsing ---------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    token = text.strip().split(" ", 1)[0] if text.strip() else ""
    if not _NUMBER.fullmatch(token):
        return None
    value = float(token)
    return value if math.isfinite(value) else None


def _floats(text: str) -> list[float] | None:
    tokens = text.replace(",", " ").split()
    if not tokens or len(tokens) > 3 * MAX_VERTICES:
        return None
    out: list[float] = []
    for token in tokens:
        value = _float(token)
        if value is None:
            return None
        out.append(value)
    return out


def _angle_deg(text: str | None, uom: str | None) -> float | None:
    """An angle in degrees from its value and unit: a GML uom (EPSG::9102 degrees, EPSG::9101
    radians: RFC 5491 §6) or Asterisk's label (``degrees``, ``radians``). No unit is degrees
    (what Asterisk assumes too); None for any other unit: a band whose angles are in an unknown
    unit is drawn as its whole outer circle, never guessed."""
    value = _float(text)
    if value is None:
        return None
    unit = (uom or "").strip().lower()
    if not unit or unit.endswith("9102") or unit in {"deg", "degree", "degrees"}:
        return value
    if unit.endswith("9101") or unit in {"rad", "radian", "radians"}:
        return math.degrees(value)
    return None


def _asterisk_angle(text: str) -> tuple[str, str | None]:
    """An angle as Asterisk's effective_location writes it (``"80 degrees"``) as (value, unit).

    Asterisk 22's pidf_to_eprofile.xslt labels an angle ``radians`` when the PIDF-LO said
    EPSG::9101 and ``degrees`` for anything else (EPSG::9102, no uom, another uom): checked
    through a real Asterisk 22.10 with ArcBands in both units (tests/e2e/test_pidf_call.py).
    Older res_geolocation stylesheets labelled EPSG::9102 ``radians``; that test catches it
    if such a build is ever used."""
    value, _, label = text.strip().partition(" ")
    return value, label.strip() or None


def _length_m(text: str | None, uom: str | None = None) -> tuple[float | None, str | None]:
    value = _float(text)
    if value is None:
        return None, None if text is None else f"length {text[:40]!r} is not a number"
    unit = (uom or "").strip().lower()
    if unit and not unit.endswith("9001") and unit not in {"m", "meter", "metre", "meters"}:
        return None, f"length unit {unit[:60]!r} is not metres"
    if value < 0 or value > MAX_RADIUS_M:
        return None, f"length {value} out of range"
    return value, None


# -- shapes to one circle ---------------------------------------------------------------------


@dataclass(slots=True)
class _Shape:
    shape: str
    crs: str | None = None
    positions: list[list[float]] = field(default_factory=list)
    lengths: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    angles: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _resolve(shape: _Shape) -> tuple[dict[str, Any], list[str]]:
    """Centre, covering radius and altitude of a shape; problems say what was missing."""
    problems: list[str] = list(shape.problems)
    points: list[tuple[float, float]] = []
    altitude: float | None = None
    for pos in shape.positions:
        if len(pos) < 2:
            problems.append("position with fewer than two coordinates")
            continue
        lat, lon = pos[0], pos[1]
        if not _valid_point(lat, lon):
            problems.append(f"position {lat} {lon} out of range")
            continue
        points.append((lat, lon))
        if len(pos) >= 3 and altitude is None and math.isfinite(pos[2]):
            altitude = pos[2]
    out: dict[str, Any] = {"shape": shape.shape, "crs": shape.crs, "altitude_m": altitude}
    if not points:
        problems.append(f"{shape.shape} without a usable position")
        return out, problems

    def length(name: str) -> float | None:
        raw = shape.lengths.get(name)
        if raw is None:
            return None
        value, problem = _length_m(*raw)
        if problem:
            problems.append(f"{name}: {problem}")
        return value

    lat, lon = points[0]
    radius: float | None = None
    kind = shape.shape
    if kind in ("Polygon", "Prism"):
        ring = points[:-1] if len(points) > 1 and points[0] == points[-1] else points
        if len(ring) < 3:
            problems.append(f"{kind} with fewer than three vertices")
        lat, lon, radius = _covering(ring)
    elif kind in ("Circle", "Sphere"):
        radius = length("radius")
        if radius is None:
            problems.append(f"{kind} without a radius")
    elif kind in ("Ellipse", "Ellipsoid"):
        major, minor = length("semiMajorAxis"), length("semiMinorAxis")
        axes = [a for a in (major, minor) if a is not None]
        radius = max(axes) if axes else None
        if radius is None:
            problems.append(f"{kind} without its axes")
    elif kind == "ArcBand":
        inner, outer = length("innerRadius"), length("outerRadius")
        start = _angle_deg(*shape.angles.get("startAngle", (None, None)))
        opening = _angle_deg(*shape.angles.get("openingAngle", (None, None)))
        if outer is None:
            problems.append("ArcBand without an outer radius")
        elif inner is None or start is None or opening is None or not 0 < opening <= 360:
            # Without the band's angles the safe answer is the whole outer circle.
            problems.append("ArcBand angles missing or in an unknown unit: whole outer circle")
            radius = outer
        else:
            steps = [start + opening * i / ARC_SAMPLES for i in range(ARC_SAMPLES + 1)]
            band = [_destination(lat, lon, b, outer) for b in steps]
            band += [_destination(lat, lon, b, inner) for b in reversed(steps)]
            lat, lon, radius = _covering(band)
    if radius is not None and radius > MAX_RADIUS_M:
        # A shape wider than any caller's location is junk (or a misread list): no point.
        problems.append(f"{kind} covers a radius of {radius:.0f} m, over {MAX_RADIUS_M:.0f} m")
        return out, problems
    out.update({"lat": lat, "lon": lon, "radius_m": radius})
    return out, problems


# -- Asterisk's effective_location ------------------------------------------------------------

_PAIR = re.compile(r'\s*([A-Za-z][A-Za-z0-9_\-]{0,40})\s*=\s*(?:"([^"]*)"|([^,"]*))\s*(?:,|$)')
_POSITION_KEYS = ("pos", "pos3d")
_POSLIST_KEYS = ("poslist", "pos_list")
_LENGTH_KEYS = {
    "radius": "radius",
    "semimajoraxis": "semiMajorAxis",
    "semiminoraxis": "semiMinorAxis",
    "verticalaxis": "verticalAxis",
    "innerradius": "innerRadius",
    "outerradius": "outerRadius",
    "height": "height",
}
_ANGLE_KEYS = {
    "orientation": "orientation",
    "startangle": "startAngle",
    "openingangle": "openingAngle",
}


def _pairs(value: str) -> tuple[list[tuple[str, str]], str | None]:
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(value):
        if not value[pos:].strip():
            break
        m = _PAIR.match(value, pos)
        if m is None or m.end() == pos:
            return pairs, f"unreadable at character {pos}"
        pairs.append((m.group(1), m.group(2) if m.group(2) is not None else m.group(3).strip()))
        pos = m.end()
    return pairs, None


def _clean_method(method: str | None) -> str | None:
    if method is None:
        return None
    text = "".join(ch for ch in method.strip() if ch.isprintable())[:MAX_METHOD_CHARS]
    return text or None


def _dimension(crs: str | None, declared: str | None = None) -> int | None:
    """2 or 3 coordinates per position: from the CRS (EPSG 4326 / 4979, which Asterisk writes
    as ``2d`` / ``3d``), else a GML ``srsDimension``; None when neither says."""
    lowered = (crs or "").strip().lower()
    if lowered == "2d":
        return 2
    if lowered == "3d":
        return 3
    if declared is not None and declared.strip() in {"2", "3"}:
        return int(declared.strip())
    return None


def _split_positions(values: list[float], dim: int | None) -> tuple[list[list[float]], str | None]:
    """A flat coordinate list as positions, or ([], why not). Without a stated dimension it is
    inferred only when exactly one of 2 and 3 divides the count: 3D numbers read as 2D pairs
    would put the caller somewhere else entirely, so an ambiguous list is refused."""
    count = len(values)
    if dim is None:
        fits = [d for d in (2, 3) if count % d == 0]
        if len(fits) != 1:
            kind = "either 2D or 3D" if fits else "neither 2D nor 3D"
            return [], f"{count} coordinates without srsName or srsDimension: {kind}"
        dim = fits[0]
    if count == 0 or count % dim:
        return [], f"{count} coordinates are not a whole number of {dim}D positions"
    return [values[i : i + dim] for i in range(0, count, dim)], None


def parse_effective_location(value: str, method: str | None = None) -> ParsedLocation | None:
    """``${GEOLOC_PROFILE(effective_location)}`` (and ``${GEOLOC_PROFILE(method)}``) as a
    location: coordinates with a covering radius, a civic address, or a by-reference URI.
    None when the text is empty, too long, or gives none of these. Never raises."""
    try:
        return _parse_effective(value, method)
    except Exception:  # a parser must never take the call path down with it
        return None


def _parse_effective(value: str, method: str | None) -> ParsedLocation | None:
    if not isinstance(value, str) or not value.strip():
        return None
    clean_method = _clean_method(method) if isinstance(method, str) else None
    if len(value) > MAX_EFFECTIVE_CHARS:
        return None
    pairs, problem = _pairs(value)
    problems = [problem] if problem else []
    keys = {k.lower(): v for k, v in pairs}
    if "uri" in keys:
        ref = keys["uri"].strip()[:2000]
        if not ref:
            return None
        return ParsedLocation(
            shape="reference",
            reference=ref,
            method=clean_method,
            problems=tuple(problems),
        )
    if "shape" not in keys:
        civic = {k: v.strip() for k, v in pairs if k != "lang" and v.strip()}
        if civic and any(k.upper() in _CIVIC_CODES or k == "country" for k in civic):
            return ParsedLocation(
                shape="civic",
                civic=civic,
                address=civic_address_text(civic),
                method=clean_method,
                problems=tuple(problems),
            )
        return None
    shape_name = _SHAPES_BY_LOWER.get(keys["shape"].strip().lower())
    if shape_name is None:
        return None
    shape = _Shape(shape=shape_name, crs=keys.get("crs") or None)
    dim = _dimension(shape.crs)
    for key, text in pairs:
        lower = key.lower()
        if lower in _POSITION_KEYS:
            coords = _floats(text)
            if coords is None:
                problems.append(f"{key} {text[:60]!r} is not coordinates")
            elif len(coords) > 3:
                split, problem = _split_positions(coords, dim)
                problems.extend([f"{key}: {problem}"] if problem else [])
                shape.positions.extend(split)
            else:
                shape.positions.append(coords)
        elif lower in _POSLIST_KEYS:
            coords = _floats(text)
            split, problem = _split_positions(coords, dim) if coords else ([], None)
            if not split:
                problems.append(
                    f"{key} is not a list of coordinates" + (f": {problem}" if problem else "")
                )
            shape.positions.extend(split)
        elif lower in _LENGTH_KEYS:
            shape.lengths[_LENGTH_KEYS[lower]] = (text, None)
        elif lower in _ANGLE_KEYS:
            shape.angles[_ANGLE_KEYS[lower]] = _asterisk_angle(text)
    resolved, shape_problems = _resolve(shape)
    if resolved.get("lat") is None:
        return None
    return ParsedLocation(
        method=clean_method, problems=tuple(problems + shape_problems), **resolved
    )


# -- civic addresses (RFC 4119 / RFC 5139) ----------------------------------------------------

_CIVIC_CODES = frozenset(
    {
        "A1", "A2", "A3", "A4", "A5", "A6", "PRD", "POD", "STS", "HNO", "HNS", "LMK", "LOC",
        "FLR", "NAM", "PC", "BLD", "UNIT", "ROOM", "SEAT", "PLC", "PCN", "POBOX", "ADDCODE",
        "RD", "RDSEC", "RDBR", "RDSUBBR", "PRM", "POM", "COUNTRY",
    }
)  # fmt: skip


def _with_prefix(value: str, prefix: str, known: Iterable[str]) -> str:
    lowered = value.lower()
    if any(lowered.startswith(k) for k in known):
        return value
    return f"{prefix} {value}"


def civic_address_text(civic: Mapping[str, str]) -> str | None:
    """A civic address as an Indonesian reads one: place name, street and number, building,
    kelurahan/desa (A4), kecamatan (A3), kabupaten/kota (A2), province (A1) and postcode; the
    country only when it is not Indonesia. None when nothing readable is there."""
    c = {k.upper(): " ".join(v.split()) for k, v in civic.items() if v and v.strip()}
    parts: list[str] = []
    if "NAM" in c:
        parts.append(c["NAM"])
    road = c.get("RD") or c.get("A6")
    if road:
        street_type = c.get("STS")
        words = [c.get("PRM"), c.get("PRD")]
        if street_type and not road.lower().startswith(street_type.lower()):
            words.append(street_type)
        words += [road, c.get("POD"), c.get("POM")]
        street = " ".join(w for w in words if w)
        for key in ("RDSEC", "RDBR", "RDSUBBR"):
            if key in c:
                street += f" {c[key]}"
        number = (c.get("HNO", "") + c.get("HNS", "")).strip()
        if number:
            street += f" No. {number}"
        parts.append(street)
    elif "HNO" in c:
        parts.append(f"No. {c['HNO']}{c.get('HNS', '')}")
    building = [
        c.get("BLD"),
        f"Lt. {c['FLR']}" if "FLR" in c else None,
        c.get("UNIT"),
        f"Ruang {c['ROOM']}" if "ROOM" in c else None,
        c.get("LOC"),
        f"dekat {c['LMK']}" if "LMK" in c else None,
        c.get("A5"),
    ]
    parts += [b for b in building if b]
    if "A4" in c:
        parts.append(_with_prefix(c["A4"], "Kel.", ("kel", "desa", "ds.", "kampung", "nagari")))
    if "A3" in c:
        parts.append(_with_prefix(c["A3"], "Kec.", ("kec", "distrik")))
    if "A2" in c:
        parts.append(c["A2"])
    province = " ".join(x for x in (c.get("A1"), c.get("PC")) if x)
    if province:
        parts.append(province)
    country = c.get("COUNTRY")
    if country and country.upper() not in {"ID", "IDN", "INDONESIA"}:
        parts.append(country)
    if "POBOX" in c:
        parts.append(f"PO Box {c['POBOX']}")
    text = ", ".join(parts)
    text = "".join(ch for ch in text if ch.isprintable())[:MAX_ADDRESS_CHARS].strip()
    return text or None


# -- PIDF-LO XML ------------------------------------------------------------------------------

_DTD = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1]


def _text(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    text = "".join(element.itertext()).strip()
    return " ".join(text.split()) or None


def _find(element: ET.Element, name: str) -> ET.Element | None:
    for child in element.iter():
        if child is not element and _local(child.tag) == name:
            return child
    return None


def _crs(element: ET.Element) -> str | None:
    srs = (element.get("srsName") or "").strip()
    if srs.endswith("4326"):
        return "2d"
    if srs.endswith("4979"):
        return "3d"
    return srs[:60] or None


def _shape_from_xml(element: ET.Element) -> _Shape:
    shape = _Shape(shape=_SHAPES_BY_LOWER[_local(element.tag).lower()], crs=_crs(element))
    for child in element.iter():
        name = _local(child.tag)
        text = _text(child)
        if text is None:
            continue
        if name == "pos":
            coords = _floats(text)
            if coords is not None:
                shape.positions.append(coords)
        elif name == "posList":
            coords = _floats(text)
            dim = _dimension(shape.crs, child.get("srsDimension") or element.get("srsDimension"))
            split, problem = _split_positions(coords, dim) if coords else ([], None)
            if not split:
                shape.problems.append(
                    "posList is not a list of coordinates" + (f": {problem}" if problem else "")
                )
            shape.positions.extend(split)
        elif name.lower() in _LENGTH_KEYS:
            shape.lengths[_LENGTH_KEYS[name.lower()]] = (text, child.get("uom"))
        elif name.lower() in _ANGLE_KEYS:
            shape.angles[_ANGLE_KEYS[name.lower()]] = (text, child.get("uom"))
    return shape


def _timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _confidence(element: ET.Element | None) -> int | None:
    value = _float(_text(element))
    if value is None or not 0 <= value <= 100:
        return None
    return round(value)


def parse_pidf_lo(document: str | bytes) -> ParsedLocation | None:
    """A PIDF-LO document (``application/pidf+xml``) as one location: the first geodetic shape
    (device, then tuple, then person, in document order), with the civic address written out
    when there is one. None when the document is not PIDF-LO or holds no location; never
    raises. Refuses DTDs and documents over :data:`MAX_PIDF_CHARS`."""
    try:
        return _parse_pidf(document)
    except Exception:  # never raise, whatever the input
        return None


def _parse_pidf(document: str | bytes) -> ParsedLocation | None:
    if isinstance(document, bytes):
        if len(document) > MAX_PIDF_CHARS:
            return ParsedLocation(problems=(f"document over {MAX_PIDF_CHARS} bytes",))
        try:
            document = document.decode("utf-8-sig")
        except UnicodeDecodeError:
            return ParsedLocation(problems=("document is not UTF-8",))
    if not isinstance(document, str) or not document.strip():
        return None
    if len(document) > MAX_PIDF_CHARS:
        return ParsedLocation(problems=(f"document over {MAX_PIDF_CHARS} characters",))
    if _DTD.search(document):
        return ParsedLocation(problems=("document type declarations are refused",))
    # The declared encoding is moot once the text is decoded; drop it so expat does not object.
    body = re.sub(r"^\s*<\?xml[^>]*\?>", "", document, count=1)
    try:
        # Safe without defusedxml: DTDs (and so entity declarations) were refused above, and
        # expat resolves no external resources.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError as exc:
        return ParsedLocation(problems=(f"not well-formed XML: {str(exc)[:120]}",))
    if _local(root.tag) != "presence":
        return None
    elements = [e for e in root if _local(e.tag) in ("device", "tuple", "person")]
    order = {"device": 0, "tuple": 1, "person": 2}
    elements.sort(key=lambda e: order[_local(e.tag)])
    # The first shape with coordinates and the first civic address, wherever each is: a device
    # that knows only its address must not hide the circle a later tuple gives, nor the reverse.
    geodetic: ParsedLocation | None = None
    unplaced: ParsedLocation | None = None  # a shape that gave no point: its problems
    civic: dict[str, str] = {}
    civic_meta: tuple[str | None, datetime | None] | None = None
    for element in elements:
        geopriv = _find(element, "geopriv")
        if geopriv is None:
            continue
        method = _clean_method(_text(_find(geopriv, "method")))
        stamp = _timestamp(_text(_find(element, "timestamp")))
        for info in (e for e in geopriv.iter() if _local(e.tag) == "location-info"):
            for child in info:
                name = _local(child.tag)
                if name == "civicAddress" and not civic:
                    civic = {_local(c.tag): t for c in child if (t := _text(c)) and _local(c.tag)}
                    if civic:
                        civic_meta = (method, stamp)
                elif name.lower() in _SHAPES_BY_LOWER and geodetic is None:
                    resolved, problems = _resolve(_shape_from_xml(child))
                    found = ParsedLocation(
                        method=method,
                        observed_at=stamp,
                        confidence=_confidence(_find(info, "confidence")),
                        problems=tuple(problems),
                        **resolved,
                    )
                    if found.has_coordinates:
                        geodetic = found
                    elif unplaced is None:
                        unplaced = found
        if geodetic is not None and civic:
            break
    result = geodetic or unplaced
    if result is None and civic_meta is not None:
        result = ParsedLocation(shape="civic", method=civic_meta[0], observed_at=civic_meta[1])
    if result is None:
        return None
    if civic:
        return replace(result, civic=civic, address=civic_address_text(civic))
    return result


# -- the Geolocation header -------------------------------------------------------------------

_URI_IN_BRACKETS = re.compile(r"<([^<>]{1,2000})>")
_FETCHABLE = ("http", "https")


@dataclass(frozen=True, slots=True, kw_only=True)
class GeolocationRef:
    """One URI of a SIP Geolocation header (RFC 6442 §4.1)."""

    uri: str
    scheme: str
    by_value: bool
    """``cid:``: the location is in the message body (Asterisk resolves it)."""

    @property
    def fetchable(self) -> bool:
        """An http(s) reference siaga112 could dereference (only when configured to)."""
        return self.scheme in _FETCHABLE


def parse_geolocation_header(value: str) -> list[GeolocationRef]:
    """The URIs of a Geolocation header value, in order; [] for junk. Never raises."""
    try:
        out: list[GeolocationRef] = []
        for match in _URI_IN_BRACKETS.finditer(value[:4000] if isinstance(value, str) else ""):
            uri = match.group(1).strip()
            scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
            if not scheme.isalpha() or not uri.isprintable():
                continue
            out.append(GeolocationRef(uri=uri, scheme=scheme, by_value=scheme == "cid"))
        return out
    except Exception:
        return []
