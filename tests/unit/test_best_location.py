"""The best-location rule: operator-confirmed wins and is never replaced silently; otherwise the
most precise of the fixes close in time to the newest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from siaga112.locations.models import Location
from siaga112.locations.service import best_location

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def loc(
    *,
    at_s: float,
    radius: float | None,
    source: str = "network_cell",
    placed: bool = True,
    confirmed_at_s: float | None = None,
) -> Location:
    return Location(
        id=uuid.uuid4(),
        source=source,
        lat=-6.2 if placed else None,
        lon=106.8 if placed else None,
        radius_m=radius,
        observed_at=T0 + timedelta(seconds=at_s),
        confirmed=confirmed_at_s is not None,
        confirmed_at=T0 + timedelta(seconds=confirmed_at_s) if confirmed_at_s is not None else None,
    )


def test_no_locations_or_none_with_coordinates_gives_no_best() -> None:
    assert best_location([]) is None
    assert best_location([loc(at_s=0, radius=None, placed=False)]) is None


def test_most_precise_recent_fix_wins() -> None:
    cell = loc(at_s=0, radius=1500)
    aml = loc(at_s=20, radius=12, source="aml_sms")
    coarse_later = loc(at_s=40, radius=800)
    best = best_location([cell, aml, coarse_later])
    assert best is not None
    assert best.location is aml
    assert best.reason == "most_precise_recent"


def test_precise_but_stale_fix_loses_to_recent_ones() -> None:
    old_gps = loc(at_s=0, radius=5, source="aml_https")
    recent_cell = loc(at_s=3600, radius=900)
    best = best_location([old_gps, recent_cell], recent_window=timedelta(minutes=5))
    assert best is not None
    assert best.location is recent_cell
    wide = best_location([old_gps, recent_cell], recent_window=timedelta(hours=2))
    assert wide is not None
    assert wide.location is old_gps


def test_equal_radius_prefers_the_newer_fix() -> None:
    a, b = loc(at_s=0, radius=50), loc(at_s=10, radius=50)
    best = best_location([b, a])
    assert best is not None
    assert best.location is b


def test_fix_without_radius_counts_as_least_precise() -> None:
    no_radius = loc(at_s=30, radius=None, source="operator")
    cell = loc(at_s=0, radius=2000)
    best = best_location([no_radius, cell])
    assert best is not None
    assert best.location is cell
    only = best_location([no_radius])
    assert only is not None
    assert only.reason == "latest"


def test_confirmed_location_wins_and_newer_fixes_are_counted_not_applied() -> None:
    confirmed = loc(at_s=0, radius=None, source="operator", confirmed_at_s=5)
    newer_precise = loc(at_s=60, radius=3, source="aml_https")
    best = best_location([confirmed, newer_precise])
    assert best is not None
    assert best.location is confirmed
    assert best.reason == "confirmed"
    assert best.newer_unconfirmed == 1


def test_latest_confirmation_takes_precedence() -> None:
    first = loc(at_s=0, radius=100, confirmed_at_s=10)
    second = loc(at_s=-30, radius=500, confirmed_at_s=20)
    best = best_location([first, second])
    assert best is not None
    assert best.location is second
