"""Lists and counts by a caller's number read each stored column and form on its own index, a
page at a time (siaga112.callers.matching): the pages must still be exactly the number's rows
in order, with the other filters applied before the page is cut, a row found in two columns
listed and counted once, and an incident found only through one of its calls included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident
from tests.conftest import auth

NUMBER = "+6281377700001"
SPOOFER = "+6281377700009"  # asserted identity of a call whose From header is NUMBER
T0 = datetime(2033, 5, 1, 3, 0, tzinfo=UTC)

# (minute, incident caller_number, status, the call's caller_number, caller_e164, asserted)
ROWS: list[tuple[int, str | None, str, str | None, str | None, str | None]] = [
    (0, "081377700001", "new", "081377700001", NUMBER, None),
    (1, "6281377700001", "closed", "6281377700001", None, None),
    (2, NUMBER, "closed", "anonymous", None, "6281377700001"),
    # The number is only the From header: the incident is the asserted identity's.
    (3, SPOOFER, "closed", "081377700001", NUMBER, SPOOFER),
    (4, NUMBER, "new", NUMBER, NUMBER, NUMBER),  # in all three columns: once
    (5, NUMBER, "closed", "081377700001", NUMBER, "081377700001"),
    (6, "081377700001", "closed", None, None, None),  # a walk-in: no call
    (7, NUMBER, "closed", "081377700001", NUMBER, None),
]


@pytest.fixture
async def stored(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> tuple[list[int], list[str]]:
    """The incident ids and call ids, newest first."""
    incidents: list[Incident] = []
    calls: list[Call] = []
    async with sessionmaker() as session:
        for minute, number, status, caller_number, e164, asserted in ROWS:
            at = T0 + timedelta(minutes=minute)
            incident = Incident(
                status=status,
                priority=3,
                channel="call" if caller_number else "walk_in",
                caller_number=number,
                created_by="tests",
                created_at=at,
                updated_at=at,
            )
            session.add(incident)
            await session.flush()
            incidents.append(incident)
            if caller_number is None:
                continue
            uid = f"np.{uuid.uuid4().hex[:12]}"
            call = Call(
                id=uuid.uuid4(),
                uniqueid=uid,
                linkedid=uid,
                caller_number=caller_number,
                caller_e164=e164,
                asserted_number=asserted,
                caller_id_available=e164 is not None,
                source="agi",
                state="ended",
                offered_at=at + timedelta(seconds=1),
                incident_id=incident.id,
            )
            session.add(call)
            calls.append(call)
        # Another number's rows in between: never listed.
        other_at = T0 + timedelta(minutes=4, seconds=30)
        session.add(
            Incident(
                status="new",
                priority=3,
                channel="call",
                caller_number="+6281377700002",
                created_by="tests",
                created_at=other_at,
                updated_at=other_at,
            )
        )
        await session.commit()
    return [i.id for i in reversed(incidents)], [str(c.id) for c in reversed(calls)]


async def _all_pages(
    client: httpx.AsyncClient, path: str, params: dict[str, Any], headers: dict[str, str]
) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(20):
        r = await client.get(
            path, params=params | ({"cursor": cursor} if cursor else {}), headers=headers
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= params["limit"]
        items += [i["id"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pages never ended")


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
@pytest.mark.parametrize("typed", ["081377700001", "+6281377700001"])
async def test_pages_by_number_are_the_numbers_rows_in_order(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    stored: tuple[list[int], list[str]],
    limit: int,
    typed: str,
) -> None:
    incident_ids, call_ids = stored
    h = auth(keys[Role.SUPERVISOR])
    params = {"caller_number": typed, "limit": limit}
    assert await _all_pages(client, "/v1/incidents", params, h) == incident_ids
    assert await _all_pages(client, "/v1/calls", params, h) == call_ids


@pytest.mark.parametrize("limit", [1, 2])
async def test_other_filters_apply_before_the_page_is_cut(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    stored: tuple[list[int], list[str]],
    limit: int,
) -> None:
    """Newer closed incidents of the number must not crowd the older new ones off the page."""
    incident_ids, _ = stored
    h = auth(keys[Role.SUPERVISOR])
    params = {"caller_number": "6281377700001", "status": "new", "limit": limit}
    new = [incident_ids[len(ROWS) - 1 - m] for m in (4, 0)]
    assert await _all_pages(client, "/v1/incidents", params, h) == new


async def test_history_counts_each_row_once_and_the_incidents_of_its_calls(
    client: httpx.AsyncClient, keys: dict[Role, str], stored: tuple[list[int], list[str]]
) -> None:
    incident_ids, call_ids = stored
    r = await client.get(
        f"/v1/callers/{NUMBER}/history", params={"limit": 3}, headers=auth(keys[Role.OPERATOR])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["calls_total"], body["incidents_total"]) == (len(call_ids), len(incident_ids))
    assert body["classifications"]["unclassified"] == len(incident_ids)
    assert [c["id"] for c in body["calls"]] == call_ids[:3]
    assert [i["id"] for i in body["incidents"]] == incident_ids[:3]
    # The spoofed call's incident is the asserted number's too, and found through the call.
    spoofed = incident_ids[len(ROWS) - 1 - 3]
    assert spoofed in await _all_pages(
        client,
        "/v1/incidents",
        {"caller_number": NUMBER, "limit": 2},
        auth(keys[Role.SUPERVISOR]),
    )
