"""The live event stream against the real Asterisk: a real 112 call from SIPp shows as
`call_offered` on an SSE client, and an operator created through the API, registered with its
generated password and logged in, shows as `operator_state_changed` (idle, ringing, in_call,
idle, logged_out) as Asterisk reports it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.app import create_app
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.models import Call
from siaga112.db.session import asyncpg_dsn
from siaga112.events.hub import EventHub
from siaga112.metrics import Metrics
from siaga112_sandbox.sipp import SippOperator
from tests.conftest import auth
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import call, new_number, wait_for_call
from tests.integration.events.conftest import Frames, open_stream

EXTENSION = "7301"
PHONE_PORT = 5083


@pytest.fixture
async def api_server(stack: Stack, engine: AsyncEngine) -> AsyncIterator[str]:
    """The API with a live event hub, on a free port (SSE needs a real HTTP connection)."""
    assert stack.telephony is not None
    hub = EventHub(
        dsn=asyncpg_dsn(stack.settings.database_url_str),
        sessionmaker=stack.sessionmaker,
        metrics=Metrics(),
    )
    await hub.start()
    app = create_app(
        stack.settings,
        engine=engine,
        sessionmaker=stack.sessionmaker,
        event_hub=hub,
        call_control=stack.telephony.control,
    )
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(srv.serve())
    for _ in range(250):
        if srv.started:
            break
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    srv.should_exit = True
    await hub.stop()
    await task


async def events_until(it: Frames, done: Any, *, within_s: float = 20) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + within_s
    while not done(got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"not seen within {within_s} s; got {got}")
        got.append(await it.next_event(left))
    return got


def states_of(events: list[dict[str, Any]]) -> list[str]:
    return [
        e["data"]["data"]["state"]
        for e in events
        if e["event"] == "operator_state_changed" and e["data"]["data"]["extension"] == EXTENSION
    ]


async def test_real_call_and_operator_login_appear_on_the_stream(
    stack: Stack, api_server: str
) -> None:
    async with stack.sessionmaker() as session:
        key = await create_key(
            session=session, name="e2e-events", role=Role.SUPERVISOR, actor=system_actor("tests")
        )
        await session.commit()
    async with httpx.AsyncClient(base_url=api_server, headers=auth(key.raw), timeout=30) as api:
        r = await api.post("/v1/operators", json={"extension": EXTENSION, "name": "Dewi"})
        assert r.status_code == 201, r.text
        password = r.json()["sip"]["password"]
        phone = SippOperator(stack.settings, EXTENSION, port=PHONE_PORT, password=password)
        await asyncio.to_thread(phone.start)
        try:
            async with open_stream(
                api, params={"types": "call_offered,operator_state_changed"}
            ) as it:
                assert await it.next() == {"connected": True}
                r = await api.post(f"/v1/operators/{EXTENSION}/login")
                assert r.status_code == 200, r.text
                login = await events_until(it, lambda got: "idle" in states_of(got))

                number = new_number()
                result = await call(stack, "caller-112.xml", caller=number, hold_ms=1500)
                assert result.ok, result.output[-1500:]
                row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
                during = await events_until(
                    it,
                    lambda got: (
                        any(e["event"] == "call_offered" for e in got)
                        and states_of(got)[-1:] == ["idle"]
                        and "in_call" in states_of(got)
                    ),
                )

                r = await api.post(f"/v1/operators/{EXTENSION}/logout")
                assert r.status_code == 200, r.text
                logout = await events_until(it, lambda got: "logged_out" in states_of(got))
        finally:
            await asyncio.to_thread(phone.stop)
            await api.delete(f"/v1/operators/{EXTENSION}")

    offered = [e for e in during if e["event"] == "call_offered"]
    assert len(offered) == 1
    assert offered[0]["data"]["incident_id"] == row.incident_id
    assert offered[0]["data"]["data"]["uniqueid"] == row.uniqueid
    assert offered[0]["data"]["data"]["caller_number"] == number
    assert offered[0]["data"]["actor"] == "system:agi"

    states = states_of(login + during + logout)
    assert states[-1] == "logged_out"
    assert "ringing" in states[states.index("idle") :]
    assert all(a != b for a, b in itertools.pairwise(states)), f"repeated: {states}"
    ids = [e["id"] for e in login + during + logout]
    assert ids == sorted(set(ids))
    # Operator events carry Asterisk's own event time and no incident.
    operator_events = [e for e in login + during if e["event"] == "operator_state_changed"]
    assert all(e["data"]["incident_id"] is None for e in operator_events)
    assert all(e["data"]["actor"] == "system:ami" for e in operator_events)
