"""The kecamatan (district) of an incident, for the city's reports; pure functions, no I/O.

Where it comes from, first found wins:

1. the incident's own address as the operator wrote it (``"..., Kec. Jatiasih, Kota Bekasi"``,
   ``"kecamatan bekasi timur"``);
2. an operator-confirmed location: its civic address's A3 (PIDF-LO, RFC 5139: A3 is the
   kecamatan in Indonesia, :mod:`siaga112.locations.pidf`) or its written address;
3. the newest other location that names one the same way.

Names are compared and grouped in one spelling: words capitalised, spaces collapsed, the
``Kec.``/``Kecamatan`` prefix dropped (``"KEC. bekasi  timur"`` -> ``"Bekasi Timur"``).
Cell-tower labels are never read: they name a cell, not a place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_KECAMATAN_CHARS = 80

# "Kec. X", "Kec X", "Kec.X", "Kecamatan X", "Kecamatan: X"; not "kecil", not "kecelakaan".
_MARKER = re.compile(r"\bkec(?:amatan\b|\.|\b)\s*:?\s*", re.IGNORECASE)
# Where a kecamatan name ends in free text: separators, and the next administrative level or
# address part when the writer left the commas out.
_END = re.compile(
    r"[,;/()\n\r]|\s-\s|\d"
    r"|\b(?:kota|kab|kabupaten|kel|kelurahan|desa|ds|prov|provinsi|propinsi|rt|rw|no|jl|jalan"
    r"|gg|gang|dekat|depan|samping|belakang|kode\s+pos)\b",
    re.IGNORECASE,
)
_MAX_WORDS = 4
# Sources whose written address describes a place (a cell location's address is its label).
ADDRESS_SOURCES = frozenset({"pidf_lo", "operator"})


def normalise_kecamatan(name: str) -> str | None:
    """One spelling for grouping; None when nothing name-like is left."""
    text = _MARKER.sub("", name, count=1) if _MARKER.match(name.strip()) else name
    words = [w for w in re.split(r"\s+", text.strip(" .:-\t")) if w]
    if not words or not any(ch.isalpha() for ch in words[0]):
        return None
    words = words[:_MAX_WORDS]
    out = " ".join(w[:1].upper() + w[1:].lower() for w in words).strip(" .")
    return out[:MAX_KECAMATAN_CHARS] or None


def kecamatan_from_text(text: str | None) -> str | None:
    """The kecamatan a free-text address names after ``Kec.``/``Kecamatan``, else None."""
    if not text:
        return None
    for marker in _MARKER.finditer(text):
        rest = text[marker.end() :]
        end = _END.search(rest)
        name = rest[: end.start()] if end else rest
        found = normalise_kecamatan(name)
        if found is not None:
            return found
    return None


def kecamatan_from_civic(civic: Mapping[str, Any] | None) -> str | None:
    """A civic address's A3, whatever case its keys have."""
    if not civic:
        return None
    for key, value in civic.items():
        if isinstance(key, str) and key.upper() == "A3" and isinstance(value, str):
            return normalise_kecamatan(value)
    return None


def civic_of(raw: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The civic address kept in a location's raw payload (``raw.parsed.civic``)."""
    if not raw:
        return None
    parsed = raw.get("parsed")
    if not isinstance(parsed, Mapping):
        return None
    civic = parsed.get("civic")
    return civic if isinstance(civic, Mapping) else None


@dataclass(frozen=True, slots=True)
class LocationFacts:
    """What a location contributes: its source, written address, raw payload, time, state."""

    source: str
    address: str | None
    raw: Mapping[str, Any] | None
    observed_at: datetime
    confirmed: bool


def kecamatan_of_location(location: LocationFacts) -> str | None:
    found = kecamatan_from_civic(civic_of(location.raw))
    if found is None and location.source in ADDRESS_SOURCES:
        found = kecamatan_from_text(location.address)
    return found


def derive_kecamatan(*, address: str | None, locations: Iterable[LocationFacts]) -> str | None:
    """The incident's kecamatan by the order in the module docstring; None when nothing says."""
    found = kecamatan_from_text(address)
    if found is not None:
        return found
    ordered = sorted(locations, key=lambda loc: (loc.confirmed, loc.observed_at), reverse=True)
    for location in ordered:
        found = kecamatan_of_location(location)
        if found is not None:
            return found
    return None
