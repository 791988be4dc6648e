"""The landmark a caller names (a mosque, a market, a school), apart from the street address:
kept on the incident, changed like the address (timeline line and audit row), refused with a
stable 4xx when it is too long or carries control characters, and handed to the agencies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.dispatch.models import WebhookOutbox
from siaga112.incidents.models import Incident, IncidentEvent
from tests.conftest import auth

LANDMARK = "Seberang Masjid Al-Ikhlas, dekat Pasar Jatiasih"


async def _open(client: httpx.AsyncClient, key: str, **fields: Any) -> dict[str, Any]:
    r = await client.post("/v1/incidents", headers=auth(key), json={"channel": "walk_in"} | fields)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_landmark_round_trip_is_stripped_and_kept_apart_from_the_address(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    key = keys[Role.OPERATOR]
    created = await _open(client, key, address="Jl. Raya Jatiasih No. 10", landmark="  SDN 3  ")
    assert created["landmark"] == "SDN 3"
    assert created["address"] == "Jl. Raya Jatiasih No. 10"
    r = await client.patch(
        f"/v1/incidents/{created['id']}", headers=auth(key), json={"landmark": f" {LANDMARK}\n"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["landmark"] == LANDMARK
    detail = (await client.get(f"/v1/incidents/{created['id']}", headers=auth(key))).json()
    assert (detail["address"], detail["landmark"]) == ("Jl. Raya Jatiasih No. 10", LANDMARK)
    # The address alone changes; the landmark stays.
    r = await client.patch(
        f"/v1/incidents/{created['id']}", headers=auth(key), json={"address": "Jl. Lain 2"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["address"], r.json()["landmark"]) == ("Jl. Lain 2", LANDMARK)


async def test_landmark_change_writes_a_timeline_line_and_an_audit_row(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    key = keys[Role.OPERATOR]
    inc = await _open(client, key)
    r = await client.patch(
        f"/v1/incidents/{inc['id']}", headers=auth(key), json={"landmark": LANDMARK}
    )
    assert r.status_code == 200, r.text
    async with sessionmaker() as session:
        audit = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "incident.update", AuditEvent.entity_id == str(inc["id"])
                )
            )
        ).one()
    assert audit.before == {"landmark": None}
    assert audit.after == {"landmark": LANDMARK}
    assert audit.actor == "key:test-operator"
    timeline = (await client.get(f"/v1/incidents/{inc['id']}/timeline", headers=auth(key))).json()
    assert timeline[-1]["kind"] == "updated"
    assert timeline[-1]["data"] == {"landmark": {"from": None, "to": LANDMARK}}


async def _counts(sm: async_sessionmaker) -> tuple[int, int]:  # type: ignore[type-arg]
    async with sm() as session:
        events = await session.scalar(select(func.count()).select_from(IncidentEvent))
        audits = await session.scalar(select(func.count()).select_from(AuditEvent))
        return int(events or 0), int(audits or 0)


@pytest.mark.parametrize(
    "landmark",
    ["m" * 301, "masjid\x00", "pasar\x1b[31m", "sekolah\x7f", "", "   ", 42, ["masjid"]],
)
async def test_bad_landmark_is_422_and_changes_nothing(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    landmark: Any,
) -> None:
    key = keys[Role.OPERATOR]
    inc = await _open(client, key, landmark="SDN 3")
    before = await _counts(sessionmaker)
    r = await client.patch(
        f"/v1/incidents/{inc['id']}",
        headers=auth(key),
        json={"landmark": landmark, "summary": "tidak boleh tersimpan"},
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    assert any(d["field"].startswith("body.landmark") for d in body["details"]), body
    assert await _counts(sessionmaker) == before
    async with sessionmaker() as session:
        row = await session.get_one(Incident, inc["id"])
        assert (row.landmark, row.summary) == ("SDN 3", None)


async def test_landmark_reaches_the_agency_with_the_dispatch(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    sup = auth(keys[Role.SUPERVISOR])
    damkar = next(
        a for a in (await client.get("/v1/agencies", headers=sup)).json() if a["code"] == "damkar"
    )
    r = await client.put(
        f"/v1/agencies/{damkar['id']}/dispatch-settings",
        headers=sup,
        json={"webhook_url": "https://damkar.example.invalid/hook"},  # never reached
    )
    assert r.status_code == 200, r.text
    key = keys[Role.OPERATOR]
    inc = await _open(client, key, category="kebakaran", landmark=LANDMARK)
    r = await client.post(
        f"/v1/incidents/{inc['id']}/dispatches", headers=auth(key), json={"agencies": ["damkar"]}
    )
    assert r.status_code == 201, r.text
    [dispatch] = r.json()["items"]
    assert dispatch["incident"]["landmark"] == LANDMARK
    one = await client.get(f"/v1/dispatches/{dispatch['id']}", headers=auth(key))
    assert one.json()["incident"]["landmark"] == LANDMARK
    # The crew's system gets it in the webhook message too.
    async with sessionmaker() as session:
        payload = (
            await session.scalars(
                select(WebhookOutbox.payload).where(WebhookOutbox.dispatch_id == dispatch["id"])
            )
        ).one()
    assert payload["incident"]["landmark"] == LANDMARK
