"""Duplicate suggestions: open incidents about the same event (same caller, nearby with agreeing
categories, same kecamatan) within the time window, ranked by score with reasons; closed,
already linked, far, late and other-category incidents are left out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.auth.roles import Role
from siaga112.casefile.duplicates import haversine_m
from siaga112.incidents.models import Incident
from siaga112.locations.models import Location
from tests.conftest import auth
from tests.integration.dispatch.conftest import make_key

T0 = datetime(2033, 2, 3, 4, 0, tzinfo=UTC)
LAT, LON = -6.28211, 106.97432
M_PER_DEG_LAT = 111_195.0


@dataclass(frozen=True)
class World:
    target: int
    ids: dict[str, int]


def north(metres: float) -> tuple[float, float]:
    return LAT + metres / M_PER_DEG_LAT, LON


@pytest.fixture
async def world(sessionmaker: async_sessionmaker) -> World:  # type: ignore[type-arg]
    spec: dict[str, dict[str, Any]] = {
        "target": {"minutes": 0, "category": "kebakaran", "number": "+6281277700001",
                   "at": 0, "kecamatan": "Jatiasih"},
        # the same caller (stored in 0-form) calling back, nearby too
        "C": {"minutes": 2, "number": "081277700001", "at": 50},
        # the same caller, nowhere known
        "B": {"minutes": 3, "number": "6281277700001"},
        # another caller, same category, 100 m away, same kecamatan
        "A": {"minutes": 5, "category": "kebakaran", "number": "+6281277700009", "at": 100,
              "kecamatan": "Jatiasih"},
        # only the same kecamatan
        "H": {"minutes": 20, "kecamatan": "Jatiasih"},
        # left out: far away, other kecamatan
        "D": {"minutes": 1, "at": 2000, "kecamatan": "Koja"},
        # left out: closed
        "E": {"minutes": 4, "at": 100, "status": "closed"},
        # left out: outside the 30 min window
        "F": {"minutes": 45, "at": 10, "number": "+6281277700001"},
        # left out: nearby but another category (a medical call next door)
        "I": {"minutes": 4, "category": "medis", "at": 80},
        # left out: anonymous callers are not "the same caller"
        "J": {"minutes": 6, "number": None},
    }  # fmt: skip
    async with sessionmaker() as session:
        rows: dict[str, Incident] = {}
        for name, s in spec.items():
            at = T0 + timedelta(minutes=s["minutes"])
            rows[name] = Incident(
                status=s.get("status", "new"),
                priority=3,
                channel="call",
                category=s.get("category"),
                caller_number=s.get("number"),
                kecamatan=s.get("kecamatan"),
                origin_linkedid=f"dup.{uuid.uuid4().hex[:12]}",
                created_by="tests",
                created_at=at,
                updated_at=at,
            )
        session.add_all(rows.values())
        await session.flush()
        # G: nearby and close in time, but already linked as a duplicate of A.
        g_at = T0 + timedelta(minutes=1)
        g = Incident(
            status="new",
            priority=3,
            channel="call",
            classification="duplicate",
            duplicate_of_id=rows["A"].id,
            created_by="tests",
            created_at=g_at,
            updated_at=g_at,
        )
        session.add(g)
        await session.flush()
        for name, s in [*spec.items(), ("G", {"at": 30, "minutes": 1})]:
            if "at" not in s:
                continue
            lat, lon = north(s["at"])
            inc = g if name == "G" else rows[name]
            session.add(
                Location(
                    id=uuid.uuid4(),
                    incident_id=inc.id,
                    source="operator",
                    lat=lat,
                    lon=lon,
                    radius_m=20,
                    observed_at=inc.created_at,
                )
            )
        await session.commit()
        return World(rows["target"].id, {n: r.id for n, r in rows.items()} | {"G": g.id})


def _ranked(body: dict[str, Any], world: World) -> list[str]:
    names = {v: k for k, v in world.ids.items()}
    return [names[c["incident"]["id"]] for c in body["candidates"]]


async def test_candidates_are_ranked_with_reasons(
    client: httpx.AsyncClient, keys: dict[Role, str], world: World
) -> None:
    r = await client.get(
        f"/v1/incidents/{world.target}/duplicate-candidates", headers=auth(keys[Role.OPERATOR])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["window_min"], body["radius_m"]) == (30, 500)
    assert _ranked(body, world) == ["C", "A", "B", "H"]
    by = {n: c for n, c in zip(_ranked(body, world), body["candidates"], strict=True)}
    assert [x["code"] for x in by["C"]["reasons"]] == ["same_caller", "nearby"]
    assert by["C"]["distance_m"] == pytest.approx(50, abs=1)
    assert [x["code"] for x in by["A"]["reasons"]] == ["nearby", "same_kecamatan", "same_category"]
    assert by["A"]["reasons"][1]["detail"] == {"kecamatan": "Jatiasih"}
    assert [x["code"] for x in by["B"]["reasons"]] == ["same_caller"]
    assert by["B"]["distance_m"] is None
    assert [x["code"] for x in by["H"]["reasons"]] == ["same_kecamatan"]
    assert by["H"]["minutes_apart"] == 20
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert 0 < scores[-1] < scores[0] <= 1


async def test_radius_and_window_can_be_narrowed_per_request(
    client: httpx.AsyncClient, keys: dict[Role, str], world: World
) -> None:
    h = auth(keys[Role.INTEGRATOR])
    url = f"/v1/incidents/{world.target}/duplicate-candidates"
    r = await client.get(url, headers=h, params={"radius_m": 60})
    by = {c["incident"]["id"]: c for c in r.json()["candidates"]}
    # A at 100 m is no longer near, but still in the same kecamatan and category.
    assert [x["code"] for x in by[world.ids["A"]]["reasons"]] == ["same_kecamatan", "same_category"]
    assert "nearby" in [x["code"] for x in by[world.ids["C"]]["reasons"]]
    r = await client.get(url, headers=h, params={"window_min": 4})
    assert _ranked(r.json(), world) == ["C", "B"]
    r = await client.get(url, headers=h, params={"limit": 1})
    assert _ranked(r.json(), world) == ["C"]


async def test_missing_incident_and_roles(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    world: World,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    r = await client.get(
        "/v1/incidents/999999999/duplicate-candidates", headers=auth(keys[Role.OPERATOR])
    )
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    key = await make_key(sessionmaker, Role.AGENCY, "damkar")
    r = await client.get(f"/v1/incidents/{world.target}/duplicate-candidates", headers=auth(key))
    assert r.status_code == 403


def test_haversine_matches_known_distances() -> None:
    # One degree of latitude is about 111.2 km; Bekasi to Jakarta (Monas) about 18 km.
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-3)
    assert haversine_m(-6.2383, 106.9756, -6.1754, 106.8272) == pytest.approx(17_850, rel=0.02)
    assert haversine_m(LAT, LON, LAT, LON) == 0
