"""Callbacks through the real Asterisk: a SIPp caller abandons in the queue, the call shows on
the worklist, and a callback through the API rings the demo operator phone (SIPp, registered as
6001) and then the caller's phone behind the carrier trunk (a SIPp phone at the outbound trunk's
address). The first attempt rings out (no_answer), the second is answered (reached)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.models import Call
from siaga112.config import CallbackSettings, Settings
from siaga112.incidents.models import IncidentEvent
from siaga112_sandbox.sipp import SIP_CONF, SippOperator
from tests.conftest import auth
from tests.e2e.conftest import Stack
from tests.e2e.test_operators import udp_in_use
from tests.e2e.test_real_calls import call, new_number, wait_for_call

# The caller's phone rings this long before the callback gives up on it (no_answer).
SHORT_RING_S = 5


@pytest.fixture
async def api(stack: Stack, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    assert stack.telephony is not None
    settings: Settings = stack.settings.model_copy(
        update={"callbacks": CallbackSettings(caller_ring_s=SHORT_RING_S)}
    )
    app = create_app(
        settings,
        engine=engine,
        sessionmaker=stack.sessionmaker,
        call_control=stack.telephony.control,
    )
    async with stack.sessionmaker() as session:
        # Operator 6001's own key: it rings 6001's phone.
        key = await create_key(
            session=session,
            name="e2e-operator",
            role=Role.OPERATOR,
            actor=system_actor("tests"),
            operator_extension="6001",
        )
        await session.commit()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://siaga112.test", headers=auth(key.raw)
    ) as client:
        yield client


def callers_phone(
    stack: Stack, scenario: str, *, talk_ms: int = 0, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """The caller's own phone, reached through the carrier trunk: a SIPp phone listening at the
    outbound trunk's address, for one call."""
    host, port = stack.settings.pbx.outbound_trunk.rsplit(":", 1)
    return subprocess.run(
        [
            "sipp",
            "-sf",
            str(SIP_CONF / scenario),
            "-i",
            host,
            "-p",
            port,
            "-d",
            str(talk_ms),
            "-aa",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            f"{int(timeout)}s",
            "-timeout_error",
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
        check=False,
    )


async def phone_listening(stack: Stack) -> None:
    host, port = stack.settings.pbx.outbound_trunk.rsplit(":", 1)
    for _ in range(100):
        if udp_in_use(host, int(port)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the caller's phone did not start")


async def wait_for_outcome(api: httpx.AsyncClient, call_id: str, attempts: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await api.get(f"/v1/callbacks/{call_id}")).json()
        done = [a for a in body.get("attempt_list", []) if a["outcome"] is not None]
        if len(done) >= attempts and body["status"] != "in_progress":
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"no outcome within 30 s: {body}")


async def test_abandoned_caller_is_called_back_no_answer_then_reached(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    number = new_number()
    # No operator phone registered: the caller waits about 3 s in the queue, then hangs up.
    result = await call(stack, "caller-112-abandon.xml", caller=number, hold_ms=0)
    assert result.ok, result.output[-1500:]
    abandoned = await wait_for_call(stack, Call.asserted_number == number, states={"abandoned"})

    body = (await api.get("/v1/callbacks", params={"status": "pending"})).json()
    [item] = [i for i in body["items"] if i["call_id"] == str(abandoned.id)]
    assert (item["number"], item["reason"]) == (number, "abandoned")

    with SippOperator(stack.settings, "6001") as _:
        # First attempt: the caller's phone rings and nobody picks up.
        ringing = asyncio.create_task(
            asyncio.to_thread(callers_phone, stack, "callee-no-answer.xml")
        )
        await phone_listening(stack)
        r = await api.post(
            f"/v1/callbacks/{abandoned.id}/call", json={"operator_extension": "6001"}
        )
        assert r.status_code == 202, r.text
        assert r.json()["dialled"] == number.lstrip("+")
        # Operator 6001's key rings only 6001's phone (a supervisor may ring 6002's, and then
        # gets callback_in_progress: tests/integration/callbacks).
        second_operator = await api.post(
            f"/v1/callbacks/{abandoned.id}/call", json={"operator_extension": "6002"}
        )
        assert (second_operator.status_code, second_operator.json()["code"]) == (
            403,
            "not_own_operator",
        )
        first = await wait_for_outcome(api, str(abandoned.id), 1)
        assert (first["status"], first["last_outcome"]) == ("no_answer", "no_answer")
        [attempt] = first["attempt_list"]
        assert (attempt["originated"], attempt["dial_status"]) == (True, "NOANSWER")
        rang = await ringing
        assert rang.returncode == 0, rang.stdout[-1500:]

        # Second attempt: the caller answers, talks 2 s and hangs up.
        answering = asyncio.create_task(
            asyncio.to_thread(callers_phone, stack, "callee-answer.xml", talk_ms=2000)
        )
        await phone_listening(stack)
        r = await api.post(
            f"/v1/callbacks/{abandoned.id}/call", json={"operator_extension": "6001"}
        )
        assert r.status_code == 202, r.text
        second = await wait_for_outcome(api, str(abandoned.id), 2)
        answered = await answering
    assert answered.returncode == 0, answered.stdout[-1500:]
    assert (second["status"], second["attempts"], second["last_outcome"]) == (
        "reached",
        2,
        "reached",
    )
    latest = second["attempt_list"][0]
    assert (latest["outcome"], latest["dial_status"], latest["operator_extension"]) == (
        "reached",
        "ANSWER",
        "6001",
    )
    assert latest["operator_answered_at"] <= latest["dial_ended_at"]
    assert second["reached_at"] == latest["dial_ended_at"]
    deadline = time.monotonic() + 10
    while latest["ended_at"] is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        latest = (await api.get(f"/v1/callbacks/{abandoned.id}")).json()["attempt_list"][0]
    assert latest["ended_at"] is not None, "the caller's hang-up was not recorded"
    assert latest["ended_at"] >= latest["dial_ended_at"]

    async with stack.sessionmaker() as session:
        kinds = (
            await session.scalars(
                select(IncidentEvent.kind)
                .where(
                    IncidentEvent.incident_id == abandoned.incident_id,
                    IncidentEvent.kind.like("callback_%"),
                )
                .order_by(IncidentEvent.id)
            )
        ).all()
        # The callback legs are not 112 calls: still the one call from this number.
        calls = await session.scalar(
            select(func.count())
            .select_from(Call)
            .where(or_(Call.asserted_number == number, Call.caller_number == number))
        )
    assert list(kinds) == [
        "callback_attempted",
        "callback_result",
        "callback_attempted",
        "callback_result",
    ]
    assert calls == 1
