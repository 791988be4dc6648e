"""Operators through the API alone, against the real Asterisk: an account created by the API is
live in Asterisk at once (PJSIP realtime), a SIPp phone registers with the generated password,
logs in, shows paused and idle as Asterisk reports it, answers a real 112 call; disabled, it can
no longer register."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from typing import Any

import httpx

from siaga112.calls.models import Call
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SIP_CONF, SippOperator, register_operator
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import call, new_number, wait_for_call

EXTENSION = "7201"
PHONE_PORT = 5081


async def wait_for_state(api: httpx.AsyncClient, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await api.get(f"/v1/operators/{EXTENSION}")).json()
        if body.get("state") == state:
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"operator not {state} within 10 s: {body}")


async def test_api_created_operator_registers_logs_in_pauses_and_answers_a_112_call(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    r = await api.post("/v1/operators", json={"extension": EXTENSION, "name": "Rina"})
    assert r.status_code == 201, r.text
    password = r.json()["sip"]["password"]
    shown = pbx.cli(stack.settings, f"pjsip show endpoint {EXTENSION}")
    assert f"{EXTENSION}/{EXTENSION}" in shown or EXTENSION in shown

    wrong = await asyncio.to_thread(
        register_operator, stack.settings, EXTENSION, port=PHONE_PORT, password="wrong", timeout=5
    )
    assert not wrong.ok

    phone = SippOperator(stack.settings, EXTENSION, port=PHONE_PORT, password=password)
    await asyncio.to_thread(phone.start)
    try:
        r = await api.post(f"/v1/operators/{EXTENSION}/login")
        assert r.status_code == 200, r.text
        await wait_for_state(api, "idle")

        r = await api.post(f"/v1/operators/{EXTENSION}/pause", json={"reason": "briefing"})
        assert r.status_code == 200, r.text
        body = await wait_for_state(api, "paused")
        assert body["pause_reason"] == "briefing"
        members = pbx.cli(stack.settings, f"queue show {stack.settings.pbx.queue_name}")
        assert "briefing" in members

        await api.post(f"/v1/operators/{EXTENSION}/resume")
        await wait_for_state(api, "idle")

        number = new_number()
        result = await call(stack, "caller-112.xml", caller=number, hold_ms=1500)
        assert result.ok, result.output[-1500:]
        row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
        assert (row.operator, row.outcome) == (EXTENSION, "answered")
    finally:
        await asyncio.to_thread(phone.stop)

    r = await api.patch(f"/v1/operators/{EXTENSION}", json={"enabled": False})
    assert r.status_code == 200, r.text
    assert r.json()["logged_in"] is False
    await wait_for_state(api, "logged_out")
    refused = await asyncio.to_thread(
        register_operator, stack.settings, EXTENSION, port=PHONE_PORT, password=password, timeout=5
    )
    assert not refused.ok
    assert (await api.delete(f"/v1/operators/{EXTENSION}")).status_code == 204


async def test_live_queue_shows_a_waiting_caller_from_asterisk(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    number = new_number()
    # No operator phone registered: the caller waits about 3 s, then hangs up.
    caller = asyncio.create_task(call(stack, "caller-112-abandon.xml", caller=number, hold_ms=0))
    try:
        row = await wait_for_call(stack, Call.asserted_number == number, states={"queued"})
        deadline = time.monotonic() + 5
        waiting: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            body = (await api.get("/v1/queue")).json()
            assert body["source"] == "asterisk"
            waiting = [w for w in body["waiting"] if w["call_id"] == str(row.id)]
            if waiting:
                break
            await asyncio.sleep(0.2)
        assert waiting, "the waiting caller did not show in /v1/queue"
        [entry] = waiting
        assert entry["queue"] == stack.settings.pbx.queue_name
        assert entry["incident_id"] == row.incident_id
        assert entry["priority"] is not None
        assert body["longest_wait_s"] >= entry["wait_s"] >= 0
    finally:
        result = await caller
    assert result.ok, result.output[-1500:]


def udp_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def agency_phone_answers_one_call(
    host: str, port: int, timeout: float
) -> subprocess.CompletedProcess[str]:
    """A SIPp phone on the outbound trunk's address answering one call (the agency)."""
    return subprocess.run(
        [
            "sipp",
            "-sf",
            str(SIP_CONF / "operator-uas.xml"),
            "-i",
            host,
            "-p",
            str(port),
            "-d",
            "200",
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


async def test_answered_call_is_transferred_to_an_agency_number(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    r = await api.post(
        "/v1/agencies",
        json={"code": "damkar_e2e", "name": "Damkar", "kind": "fire", "phone": "+62113"},
    )
    assert r.status_code == 201, r.text
    agency_id = r.json()["id"]
    host, port = stack.settings.pbx.outbound_trunk.rsplit(":", 1)
    agency = asyncio.create_task(
        asyncio.to_thread(agency_phone_answers_one_call, host, int(port), 25)
    )
    for _ in range(100):
        if udp_in_use(host, int(port)):
            break
        await asyncio.sleep(0.05)
    number = new_number()
    with SippOperator(stack.settings, "6001") as _:
        caller = asyncio.create_task(call(stack, "caller-112.xml", caller=number, hold_ms=6000))
        row = await wait_for_call(stack, Call.asserted_number == number, states={"answered"})
        r = await api.post(f"/v1/calls/{row.id}/transfer", json={"agency_id": agency_id})
        assert r.status_code == 200, r.text
        assert r.json()["number"] == "62113"
        result = await caller
    assert result.ok, result.output[-1500:]
    answered = await agency
    assert answered.returncode == 0, answered.stdout[-1500:]


async def test_operator_hangs_up_a_call_through_the_api(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    number = new_number()
    with SippOperator(stack.settings, "6001") as _:
        caller = asyncio.create_task(call(stack, "caller-112.xml", caller=number, hold_ms=15000))
        row = await wait_for_call(stack, Call.asserted_number == number, states={"answered"})
        started = time.monotonic()
        r = await api.post(f"/v1/calls/{row.id}/hangup")
        assert r.status_code == 200, r.text
        ended = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
        assert time.monotonic() - started < 10
        assert ended.ended_at is not None
        await caller  # the caller's scenario expected to hang up itself: its result is moot
