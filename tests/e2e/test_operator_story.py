"""Issue 5's story through the API alone, against the real Asterisk: a supervisor creates an
operator account, the operator's phone registers with the generated credentials and logs in, a
caller waits in the live queue until the operator answers, the operator transfers the call to
an agency's number, and the day's service-level figures count the call as answered by that
operator."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from siaga112.calls.models import Call
from siaga112_sandbox.sipp import SippOperator
from tests.e2e.conftest import Stack
from tests.e2e.test_operators import agency_phone_answers_one_call, udp_in_use
from tests.e2e.test_real_calls import call, new_number, wait_for_call

EXTENSION = "7401"
PHONE_PORT = 5083


async def _eventually(api: httpx.AsyncClient, path: str, check: Any, within: float = 15) -> Any:
    deadline = time.monotonic() + within
    body: Any = None
    while time.monotonic() < deadline:
        body = (await api.get(path)).json()
        if check(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never passed the check: {body}")


async def test_operator_created_by_api_answers_and_transfers_while_supervisor_watches(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    r = await api.post("/v1/operators", json={"extension": EXTENSION, "name": "Dewi"})
    assert r.status_code == 201, r.text
    sip = r.json()["sip"]
    r = await api.post(
        "/v1/agencies",
        json={"code": "bpbd_story", "name": "BPBD", "kind": "disaster", "phone": "+62114"},
    )
    assert r.status_code == 201, r.text
    agency_id = r.json()["id"]

    # A caller first waits: nobody is logged in yet. The supervisor sees the wait live.
    number = new_number()
    caller = asyncio.create_task(call(stack, "caller-112.xml", caller=number, hold_ms=7000))
    waiting = await wait_for_call(stack, Call.asserted_number == number, states={"queued"})
    queue = await _eventually(
        api,
        "/v1/queue",
        lambda b: any(w["call_id"] == str(waiting.id) for w in b["waiting"]),
    )
    assert queue["source"] == "asterisk"
    assert queue["longest_wait_s"] >= 0

    host, port = stack.settings.pbx.outbound_trunk.rsplit(":", 1)
    agency = asyncio.create_task(
        asyncio.to_thread(agency_phone_answers_one_call, host, int(port), 40)
    )
    for _ in range(100):
        if udp_in_use(host, int(port)):
            break
        await asyncio.sleep(0.05)
    phone = SippOperator(stack.settings, EXTENSION, port=PHONE_PORT, password=sip["password"])
    await asyncio.to_thread(phone.start)
    try:
        assert (await api.post(f"/v1/operators/{EXTENSION}/login")).status_code == 200
        row = await wait_for_call(stack, Call.asserted_number == number, states={"answered"})
        assert row.operator == EXTENSION
        r = await api.post(f"/v1/calls/{row.id}/transfer", json={"agency_id": agency_id})
        assert r.status_code == 200, r.text
        result = await caller
        assert result.ok, result.output[-1500:]
        answered = await agency
        assert answered.returncode == 0, answered.stdout[-1500:]
    finally:
        await api.post(f"/v1/operators/{EXTENSION}/logout")
        await asyncio.to_thread(phone.stop)
        await api.delete(f"/v1/operators/{EXTENSION}")

    incident = (await api.get(f"/v1/incidents/{row.incident_id}")).json()
    kinds = [e["kind"] for e in incident["timeline"]]
    assert "call_answered" in kinds
    assert any(k.startswith("call_transfer") for k in kinds), kinds
    # The day's figures, as a supervisor reads them: this call offered and answered by 7401.
    stats = await _eventually(
        api,
        f"/v1/stats?start={since.isoformat().replace('+00:00', 'Z')}",
        lambda b: any(o["operator"] == EXTENSION for o in b["by_operator"]),
    )
    mine = next(o for o in stats["by_operator"] if o["operator"] == EXTENSION)
    assert mine["answered"] == 1
    assert stats["total"]["answered"] >= 1
    assert stats["total"]["offered"] >= 1
    assert stats["total"]["answer_mean_s"] is not None
