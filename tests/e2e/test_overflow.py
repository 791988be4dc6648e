"""Queues through the real Asterisk: an operator logged in through the API takes the
low-priority queue of flagged numbers too."""

from __future__ import annotations

import asyncio

import httpx

from siaga112.auth.service import system_actor
from siaga112.calls.models import Call
from siaga112.flags.schemas import FlagCreate, FlagKind
from siaga112.flags.service import create_flag
from siaga112.telephony import pbx
from siaga112.telephony.sipp import SippOperator
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import call, new_number, wait_for_call


async def test_flagged_caller_reaches_an_operator_logged_in_through_the_api(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    ext = "7211"
    r = await api.post("/v1/operators", json={"extension": ext, "name": "Lina"})
    assert r.status_code == 201, r.text
    password = r.json()["sip"]["password"]
    low = stack.settings.pbx.low_queue_name
    phone = SippOperator(stack.settings, ext, port=5083, password=password)
    await asyncio.to_thread(phone.start)
    try:
        assert (await api.post(f"/v1/operators/{ext}/login")).status_code == 200
        assert f"PJSIP/{ext}" in pbx.cli(stack.settings, f"queue show {low}")
        number = new_number()
        async with stack.sessionmaker() as session:
            await create_flag(
                session=session,
                data=FlagCreate(number=number, kind=FlagKind.PRANK, reason="panggilan iseng"),
                actor=system_actor("tests"),
                request_id=None,
            )
            await session.commit()
        # The demo operators (static members of both queues) have no phone registered: only
        # the API operator can take the call, and only if it is a member of the low queue.
        result = await call(stack, "caller-112.xml", caller=number, hold_ms=6000)
        assert result.ok, result.output[-1500:]
        row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
        assert (row.queue, row.operator, row.outcome) == (low, ext, "answered")
        assert (await api.post(f"/v1/operators/{ext}/logout")).status_code == 200
        for queue in (stack.settings.pbx.queue_name, low):
            assert f"PJSIP/{ext}" not in pbx.cli(stack.settings, f"queue show {queue}")
    finally:
        await asyncio.to_thread(phone.stop)
        await api.delete(f"/v1/operators/{ext}")
