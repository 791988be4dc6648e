"""Kecamatan from free-text addresses and civic addresses, and which source wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from siaga112.incidents.kecamatan import (
    LocationFacts,
    derive_kecamatan,
    kecamatan_from_civic,
    kecamatan_from_text,
    normalise_kecamatan,
)
from siaga112.locations.pidf import civic_address_text


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("Jl. Raya Jatiasih 10, Kec. Jatiasih, Kota Bekasi", "Jatiasih"),
        ("kecamatan bekasi timur", "Bekasi Timur"),
        ("KECAMATAN BANTAR GEBANG, Kota Bekasi", "Bantar Gebang"),
        ("Kec.Pondok Gede Kota Bekasi", "Pondok Gede"),
        ("Kec Koja", "Koja"),
        ("Kecamatan: Serpong Utara RT 02 RW 05", "Serpong Utara"),
        ("Jl. Ahmad Yani 12, Kel. Margahayu, Kec. Bekasi Timur, Kota Bekasi 17113", "Bekasi Timur"),
        ("depan kantor kecamatan, Kec. Jatiasih", "Jatiasih"),
        ("Jl. Blandongan, Kota Pasuruan", None),
        ("kecelakaan di tol, anak kecil luka", None),
        ("depan kantor kecamatan, Jl. Mawar", None),
        ("", None),
        (None, None),
    ],
)  # fmt: skip
def test_kecamatan_from_free_text(address: str | None, expected: str | None) -> None:
    assert kecamatan_from_text(address) == expected


def test_spellings_group_as_one() -> None:
    names = ["Kec. bekasi  timur", "KECAMATAN Bekasi Timur", "bekasi timur", " Bekasi Timur. "]
    assert {normalise_kecamatan(n) for n in names} == {"Bekasi Timur"}
    assert normalise_kecamatan("12") is None


def test_civic_a3_is_the_kecamatan_and_survives_the_written_form() -> None:
    civic = {"country": "ID", "A1": "Jawa Barat", "A2": "Kota Bekasi", "a3": "Jatiasih"}
    assert kecamatan_from_civic(civic) == "Jatiasih"
    assert kecamatan_from_text(civic_address_text(civic)) == "Jatiasih"
    assert kecamatan_from_civic({"A2": "Kota Bekasi"}) is None
    assert kecamatan_from_civic(None) is None


NOW = datetime(2030, 1, 1, tzinfo=UTC)


def loc(
    *,
    source: str = "pidf_lo",
    address: str | None = None,
    a3: str | None = None,
    minutes: int = 0,
    confirmed: bool = False,
) -> LocationFacts:
    raw = {"parsed": {"civic": {"A3": a3}}} if a3 else None
    return LocationFacts(
        source=source,
        address=address,
        raw=raw,
        observed_at=NOW + timedelta(minutes=minutes),
        confirmed=confirmed,
    )


def test_address_wins_then_confirmed_then_newest() -> None:
    older, newer = loc(a3="Koja", minutes=0), loc(a3="Cilincing", minutes=5)
    confirmed = loc(source="operator", address="Kec. Tanjung Priok", minutes=1, confirmed=True)
    assert derive_kecamatan(address="Kec. Jatiasih", locations=[older, confirmed]) == "Jatiasih"
    assert derive_kecamatan(address="Jl. Mawar", locations=[older, newer]) == "Cilincing"
    assert derive_kecamatan(address=None, locations=[older, newer, confirmed]) == "Tanjung Priok"
    assert derive_kecamatan(address=None, locations=[]) is None


def test_cell_labels_are_never_read_as_places() -> None:
    cell = loc(source="network_cell", address="Kec. Koja cell 510-10 LTE")
    assert derive_kecamatan(address=None, locations=[cell]) is None
