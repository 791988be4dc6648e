"""Prank and nuisance flags: set by operators with a reason and an expiry, lifted by
supervisors, never applicable to anonymous callers; the AGI statement routes flagged numbers to
the low-priority queue and puts repeat callers ahead."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.calls.recorder import CallFacts, record_incoming
from tests.conftest import auth
from tests.factories import call_facts


def facts(number: str | None, **changes: Any) -> CallFacts:
    fields: dict[str, Any] = {
        "caller_number": number,
        "caller_e164": number,
        "asserted_number": number,
        "caller_id_available": number is not None,
        "callback_number": number,
    }
    return call_facts(f"f.{uuid.uuid4().hex[:12]}", **(fields | changes))


def number() -> str:
    return f"+62813{uuid.uuid4().int % 10**7:07d}"


async def test_operator_flags_a_number_in_local_form_and_it_is_stored_e164(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    local = "0" + number()[3:]
    r = await client.post(
        "/v1/number-flags",
        headers=auth(keys[Role.OPERATOR]),
        json={"number": local, "kind": "prank", "reason": "tertawa lalu menutup", "hours": 2},
    )
    assert r.status_code == 201, r.text
    flag = r.json()
    assert flag["number"] == "+62" + local[1:]
    assert flag["active"] is True
    expires = datetime.fromisoformat(flag["expires_at"])
    assert timedelta(hours=1, minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=2)
    listed = (await client.get("/v1/number-flags", headers=auth(keys[Role.INTEGRATOR]))).json()
    assert flag["id"] in [f["id"] for f in listed]
    async with sessionmaker() as session:
        audit = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "number_flag.create", AuditEvent.entity_id == str(flag["id"])
            )
        )
    assert audit is not None
    assert audit.actor == "key:test-operator"


@pytest.mark.parametrize("bad", ["112", "anonymous", "+62", "12345"])
async def test_short_codes_and_anonymous_cannot_be_flagged(
    client: httpx.AsyncClient, keys: dict[Role, str], bad: str
) -> None:
    r = await client.post(
        "/v1/number-flags",
        headers=auth(keys[Role.OPERATOR]),
        json={"number": bad, "kind": "prank", "reason": "iseng"},
    )
    assert r.status_code == 422
    assert r.json()["details"][0]["field"].startswith("body.number")


async def test_only_supervisors_lift_a_flag(
    client: httpx.AsyncClient, keys: dict[Role, str]
) -> None:
    created = (
        await client.post(
            "/v1/number-flags",
            headers=auth(keys[Role.OPERATOR]),
            json={"number": number(), "kind": "nuisance", "reason": "berulang kali"},
        )
    ).json()
    path = f"/v1/number-flags/{created['id']}"
    assert (await client.delete(path, headers=auth(keys[Role.OPERATOR]))).status_code == 403
    r = await client.delete(path, headers=auth(keys[Role.SUPERVISOR]))
    assert r.status_code == 200
    assert r.json()["active"] is False
    assert r.json()["revoked_by"] == "key:test-supervisor"


async def test_flag_shows_the_numbers_calls_as_evidence(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    n = number()
    at = datetime.now(UTC) - timedelta(hours=1)
    async with sessionmaker() as session:
        for i in range(3):
            await record_incoming(session=session, facts=facts(n), at=at + timedelta(minutes=i))
        await session.commit()
    created = (
        await client.post(
            "/v1/number-flags",
            headers=auth(keys[Role.OPERATOR]),
            json={"number": n, "kind": "prank", "reason": "tiga kali"},
        )
    ).json()
    r = await client.get(f"/v1/number-flags/{created['id']}", headers=auth(keys[Role.OPERATOR]))
    evidence = r.json()["evidence"]
    assert evidence["calls"] == 3
    assert evidence["by_classification"] == {"unclassified": 3}


async def test_agi_statement_reports_flagged_numbers_and_repeat_callers(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    flagged, repeat, fresh = number(), number(), number()
    await client.post(
        "/v1/number-flags",
        headers=auth(keys[Role.OPERATOR]),
        json={"number": flagged, "kind": "prank", "reason": "iseng"},
    )
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        first = await record_incoming(
            session=session,
            facts=facts(repeat),
            at=now - timedelta(minutes=5),
            repeat_window_min=10,
        )
        again = await record_incoming(
            session=session, facts=facts(repeat), at=now, repeat_window_min=10
        )
        late = await record_incoming(
            session=session,
            facts=facts(repeat),
            at=now + timedelta(minutes=30),
            repeat_window_min=10,
        )
        f = await record_incoming(session=session, facts=facts(flagged), at=now)
        other = await record_incoming(session=session, facts=facts(fresh), at=now)
        anon = await record_incoming(session=session, facts=facts(None), at=now)
    assert (first.repeat_caller, again.repeat_caller, late.repeat_caller) == (False, True, False)
    assert (f.flagged, other.flagged, anon.flagged, anon.repeat_caller) == (
        True,
        False,
        False,
        False,
    )


async def test_evidence_finds_the_number_in_every_stored_form(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    n = number()
    local, bare = "0" + n[3:], n[1:]
    at = datetime.now(UTC) - timedelta(hours=2)
    async with sessionmaker() as session:
        # Caller ID in the 0-form without E.164, in the 62-form, and only as the asserted
        # identity of a restricted call: all the same caller.
        await record_incoming(
            session=session,
            facts=facts(local, caller_e164=None, asserted_number=None, callback_number=local),
            at=at,
        )
        await record_incoming(
            session=session,
            facts=facts(bare, caller_e164=None, asserted_number=None, callback_number=bare),
            at=at + timedelta(minutes=1),
        )
        await record_incoming(
            session=session,
            facts=facts(
                "anonymous",
                caller_e164=None,
                caller_id_available=False,
                asserted_number=local,
                callback_number=local,
            ),
            at=at + timedelta(minutes=2),
        )
        await session.commit()
    created = (
        await client.post(
            "/v1/number-flags",
            headers=auth(keys[Role.OPERATOR]),
            json={"number": n, "kind": "prank", "reason": "tiga bentuk nomor"},
        )
    ).json()
    r = await client.get(f"/v1/number-flags/{created['id']}", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 200, r.text
    evidence = r.json()["evidence"]
    assert evidence["calls"] == 3
    assert evidence["by_classification"] == {"unclassified": 3}
    assert datetime.fromisoformat(evidence["first_call_at"]) == at


async def test_reading_a_flags_evidence_is_audited(
    client: httpx.AsyncClient,
    keys: dict[Role, str],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    n = number()
    async with sessionmaker() as session:
        await record_incoming(session=session, facts=facts(n), at=datetime.now(UTC))
        await session.commit()
    created = (
        await client.post(
            "/v1/number-flags",
            headers=auth(keys[Role.OPERATOR]),
            json={"number": n, "kind": "nuisance", "reason": "berulang kali"},
        )
    ).json()
    r = await client.get(f"/v1/number-flags/{created['id']}", headers=auth(keys[Role.INTEGRATOR]))
    assert r.status_code == 200, r.text
    async with sessionmaker() as session:
        reads = (
            await session.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "caller.history.read", AuditEvent.entity_id == n
                )
            )
        ).all()
    assert [(e.actor, e.entity_type) for e in reads] == [("key:test-integrator", "caller")]
    assert reads[0].after == {"calls": 1, "incidents": 1, "flag_id": created["id"]}
    # Listing flags shows no call history, so it reads none.
    await client.get("/v1/number-flags", headers=auth(keys[Role.INTEGRATOR]))
    async with sessionmaker() as session:
        count = len(
            (
                await session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.action == "caller.history.read", AuditEvent.entity_id == n
                    )
                )
            ).all()
        )
    assert count == 1
