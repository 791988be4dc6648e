"""Suggesting which open incidents are likely about the same event as this one (several
callers about one fire), ranked with a score and the reasons; an operator decides and links
(``POST /incidents/{id}/duplicate-of``).

Candidates are the other open incidents (new, in progress, dispatched; not already linked as a
duplicate) created within ``window`` of this one, nearest in time first, at most ``max_scanned``
of them: a bounded set, scored in Python. One qualifies when

- the same caller number (any stored form) called about it: a caller calling back; or
- its best location is within ``radius_m`` of this one's and the categories agree (equal, or
  one not yet set: a call's incident has no category until an operator gives it one); or
- both lie in the same kecamatan and the categories agree.

The score (0..1) adds 0.5 for the same caller, 0.1 to 0.4 for nearness (more the nearer), 0.15
for the same kecamatan, 0.15 for the same category, and up to 0.1 for nearness in time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.callers.numbers import normalise_indonesian_number
from siaga112.incidents.lifecycle import Status
from siaga112.incidents.models import Incident
from siaga112.incidents.service import get_incident
from siaga112.locations.models import Location
from siaga112.locations.service import best_location

OPEN_STATUSES = (Status.NEW.value, Status.IN_PROGRESS.value, Status.DISPATCHED.value)
EARTH_RADIUS_M = 6_371_008.8

W_SAME_CALLER = 0.5
W_NEARBY_BASE = 0.1
W_NEARBY_CLOSE = 0.3
W_SAME_KECAMATAN = 0.15
W_SAME_CATEGORY = 0.15
W_TIME = 0.1


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (mean Earth radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _subscriber(number: str | None) -> str | None:
    """A caller's full number in E.164, or None (no number, a short code, junk)."""
    if not number:
        return None
    e164 = normalise_indonesian_number(number)
    return e164 if e164 is not None and e164.startswith("+") else None


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    """``same_caller``, ``nearby``, ``same_kecamatan``, ``same_category``"""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    incident: Incident
    score: float
    minutes_apart: float
    distance_m: float | None
    reasons: list[Reason]


@dataclass(frozen=True, slots=True)
class Place:
    lat: float
    lon: float


def score_candidate(
    *,
    target: Incident,
    other: Incident,
    target_place: Place | None,
    other_place: Place | None,
    window: timedelta,
    radius_m: float,
) -> Candidate | None:
    """The candidate with its score and reasons, or None when nothing qualifies it."""
    apart = abs((other.created_at - target.created_at).total_seconds())
    if apart > window.total_seconds():
        return None
    reasons: list[Reason] = []
    score = 0.0
    qualifies = False
    caller = _subscriber(target.caller_number)
    if caller is not None and caller == _subscriber(other.caller_number):
        reasons.append(Reason("same_caller"))
        score += W_SAME_CALLER
        qualifies = True
    categories_agree = (
        target.category is None or other.category is None or target.category == other.category
    )
    distance: float | None = None
    if target_place is not None and other_place is not None:
        distance = haversine_m(target_place.lat, target_place.lon, other_place.lat, other_place.lon)
        if distance <= radius_m and categories_agree:
            reasons.append(Reason("nearby", {"distance_m": round(distance, 1)}))
            score += W_NEARBY_BASE + W_NEARBY_CLOSE * (1 - distance / radius_m)
            qualifies = True
    if target.kecamatan is not None and target.kecamatan == other.kecamatan and categories_agree:
        reasons.append(Reason("same_kecamatan", {"kecamatan": target.kecamatan}))
        score += W_SAME_KECAMATAN
        qualifies = True
    if not qualifies:
        return None
    if target.category is not None and target.category == other.category:
        reasons.append(Reason("same_category", {"category": target.category}))
        score += W_SAME_CATEGORY
    score += W_TIME * (1 - apart / window.total_seconds())
    return Candidate(
        incident=other,
        score=round(min(score, 1.0), 3),
        minutes_apart=round(apart / 60, 1),
        distance_m=None if distance is None else round(distance, 1),
        reasons=reasons,
    )


async def _places(
    session: AsyncSession, incident_ids: Sequence[int], recent_window: timedelta
) -> dict[int, Place]:
    rows = (
        await session.scalars(
            select(Location).where(
                Location.incident_id.in_(incident_ids),
                Location.lat.is_not(None),
                Location.lon.is_not(None),
            )
        )
    ).all()
    by_incident: dict[int, list[Location]] = defaultdict(list)
    for row in rows:
        if row.incident_id is not None:
            by_incident[row.incident_id].append(row)
    places: dict[int, Place] = {}
    for incident_id, locations in by_incident.items():
        best = best_location(locations, recent_window=recent_window)
        if best is not None and best.location.lat is not None and best.location.lon is not None:
            places[incident_id] = Place(best.location.lat, best.location.lon)
    return places


async def duplicate_candidates(
    *,
    session: AsyncSession,
    incident_id: int,
    window: timedelta,
    radius_m: float,
    max_scanned: int,
    recent_window: timedelta,
    limit: int,
) -> list[Candidate]:
    """Ranked candidates for ``incident_id`` (best first, at most ``limit``)."""
    target = await get_incident(session=session, incident_id=incident_id)
    others = list(
        (
            await session.scalars(
                select(Incident)
                .where(
                    Incident.id != target.id,
                    Incident.status.in_(OPEN_STATUSES),
                    Incident.duplicate_of_id.is_(None),
                    Incident.created_at >= target.created_at - window,
                    Incident.created_at <= target.created_at + window,
                )
                .order_by(
                    func.abs(func.extract("epoch", Incident.created_at - target.created_at)),
                    Incident.id,
                )
                .limit(max_scanned)
            )
        ).all()
    )
    if not others:
        return []
    places = await _places(session, [target.id, *(o.id for o in others)], recent_window)
    scored = [
        c
        for o in others
        if (
            c := score_candidate(
                target=target,
                other=o,
                target_place=places.get(target.id),
                other_place=places.get(o.id),
                window=window,
                radius_m=radius_m,
            )
        )
        is not None
    ]
    scored.sort(key=lambda c: (-c.score, c.minutes_apart, -c.incident.id))
    return scored[:limit]
