"""Service levels over known calls: counts, answer-time figures, thresholds, hours, operators,
CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from tests.conftest import auth

# A quiet hour far from any other test's calls.
T0 = datetime(2031, 3, 1, 1, 0, tzinfo=UTC)  # 08:00 in Asia/Jakarta


def call(
    offset_s: int,
    *,
    answer_after: float | None,
    operator: str | None = None,
    state: str | None = None,
    talk_s: int = 30,
) -> Call:
    offered = T0 + timedelta(seconds=offset_s)
    answered = offered + timedelta(seconds=answer_after) if answer_after is not None else None
    uid = f"s.{uuid.uuid4().hex[:12]}"
    return Call(
        uniqueid=uid,
        linkedid=uid,
        caller_id_available=True,
        source="agi",
        state=state or ("ended" if answered else "abandoned"),
        offered_at=offered,
        answered_at=answered,
        operator=operator,
        ended_at=(answered or offered) + timedelta(seconds=talk_s),
    )


@pytest.fixture
async def calls(sessionmaker: async_sessionmaker) -> None:  # type: ignore[type-arg]
    async with sessionmaker() as session:
        session.add_all(
            [
                call(0, answer_after=4, operator="6001"),
                call(60, answer_after=8, operator="6001"),
                call(120, answer_after=12, operator="6002"),
                call(180, answer_after=18, operator="6002"),
                call(3700, answer_after=30, operator="6001"),  # the next hour
                call(240, answer_after=None),  # abandoned in the queue
            ]
        )
        await session.commit()


async def test_service_levels_for_known_calls(
    client: httpx.AsyncClient, keys: dict[Role, str], calls: None
) -> None:
    r = await client.get(
        "/v1/stats",
        headers=auth(keys[Role.SUPERVISOR]),
        params={"start": T0.isoformat(), "end": (T0 + timedelta(hours=2)).isoformat()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    total = body["total"]
    assert (total["offered"], total["answered"], total["abandoned"]) == (6, 5, 1)
    assert total["abandon_rate"] == round(1 / 6, 4)
    assert total["answer_mean_s"] == pytest.approx((4 + 8 + 12 + 18 + 30) / 5)
    assert total["answered_within"] == {
        "10s": round(2 / 6, 4),
        "15s": round(3 / 6, 4),
        "20s": round(4 / 6, 4),
    }
    assert total["answer_p90_s"] == pytest.approx(25.2)  # percentile_cont over 4,8,12,18,30
    hours = body["by_hour"]
    assert [h["hour"][11:16] for h in hours] == ["08:00", "09:00"]  # Asia/Jakarta
    assert [h["figures"]["offered"] for h in hours] == [5, 1]
    ops = {o["operator"]: o for o in body["by_operator"]}
    assert ops["6001"]["answered"] == 3
    assert ops["6002"]["answer_mean_s"] == pytest.approx(15.0)
    assert ops["6001"]["talk_mean_s"] == pytest.approx(30.0)


async def test_stats_csv_export(
    client: httpx.AsyncClient, keys: dict[Role, str], calls: None
) -> None:
    params = {
        "start": T0.isoformat(),
        "end": (T0 + timedelta(hours=2)).isoformat(),
        "format": "csv",
        "rows": "operator",
    }
    r = await client.get("/v1/stats", headers=auth(keys[Role.INTEGRATOR]), params=params)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["operator"] for row in rows] == ["6001", "6002"]
    assert rows[0]["answered"] == "3"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"tz": "Mars/Olympus"}, "query.tz"),
        ({"start": "2031-03-02T00:00:00+00:00", "end": "2031-03-01T00:00:00+00:00"}, "query.start"),
        ({"start": "2031-03-01T00:00:00"}, "query.start"),
        ({"format": "xml"}, "query.format"),
    ],
)
async def test_bad_stats_query_is_422(
    client: httpx.AsyncClient, keys: dict[Role, str], params: dict[str, str], field: str
) -> None:
    r = await client.get("/v1/stats", headers=auth(keys[Role.SUPERVISOR]), params=params)
    assert r.status_code == 422
    assert field in [d["field"] for d in r.json()["details"]]


async def test_stats_csv_neutralises_formulas(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    at = datetime(2031, 4, 2, 3, 0, tzinfo=UTC)
    async with sessionmaker() as session:
        row = call(0, answer_after=4, operator="-2+3")
        row.offered_at = at
        assert row.answered_at is not None
        row.answered_at = at + timedelta(seconds=4)
        row.ended_at = at + timedelta(seconds=30)
        session.add(row)
        await session.commit()
    params = {
        "start": at.isoformat(),
        "end": (at + timedelta(hours=1)).isoformat(),
        "format": "csv",
        "rows": "operator",
    }
    r = await client.get("/v1/stats", headers=auth(keys[Role.INTEGRATOR]), params=params)
    assert r.status_code == 200, r.text
    assert [row["operator"] for row in csv.DictReader(io.StringIO(r.text))] == ["'-2+3"]
