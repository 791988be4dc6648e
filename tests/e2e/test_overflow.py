"""Queues, overflow and priority through the real Asterisk: an operator logged in through the API
takes the low-priority queue of flagged numbers too; with no operator available a call also
rings the overflow destination (a neighbouring centre's number through the carrier trunk) and
is answered there; after the overflow wait, operators and the overflow destination ring
together; a repeat caller is answered before a caller who waited longer."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from siaga112.auth.service import system_actor
from siaga112.callers.flag_schemas import FlagCreate, FlagKind
from siaga112.callers.flags import create_flag
from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.incidents.models import IncidentEvent
from siaga112.telephony.ami_events import AgentRinging, AmiEvent
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SippOperator, SippResult, run_caller
from tests.e2e.conftest import Stack
from tests.e2e.test_operators import agency_phone_answers_one_call, udp_in_use
from tests.e2e.test_real_calls import call, new_number, wait_for_call

NEIGHBOUR = "+62215550112"
OVERFLOW_AFTER_S = 2


async def long_call(stack: Stack, *, caller: str, hold_ms: int) -> SippResult:
    return await asyncio.to_thread(
        run_caller, stack.settings, "caller-112.xml", caller=caller, hold_ms=hold_ms, timeout=45
    )


Answered = asyncio.Task[subprocess.CompletedProcess[str]]


@pytest.fixture
async def neighbour(stack: Stack) -> AsyncIterator[Answered]:
    """The sandbox re-rendered (core reload) with a neighbouring centre's number as overflow
    target, and that centre: a SIPp phone on the carrier trunk's address answering one call.
    The configuration is put back as the other tests expect it afterwards."""
    settings = stack.settings
    overflow: Settings = settings.model_copy(
        update={
            "pbx": settings.pbx.model_copy(
                update={"overflow_targets": [NEIGHBOUR], "overflow_after_s": OVERFLOW_AFTER_S}
            )
        }
    )
    host, port = settings.pbx.outbound_trunk.rsplit(":", 1)
    await asyncio.to_thread(pbx.up, overflow)
    phone: Answered = asyncio.create_task(
        asyncio.to_thread(agency_phone_answers_one_call, host, int(port), 40)
    )
    try:
        for _ in range(100):
            if udp_in_use(host, int(port)):
                break
            await asyncio.sleep(0.05)
        yield phone
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(phone), 45)
        await asyncio.to_thread(pbx.up, settings)


@contextlib.contextmanager
def ami_events(stack: Stack) -> Iterator[list[AmiEvent]]:
    """Every AMI event siaga112 receives while the block runs (the tracker still gets them)."""
    assert stack.telephony is not None
    link = stack.telephony.ami
    seen: list[AmiEvent] = []
    original = link._on_event

    def tap(event: AmiEvent) -> None:
        seen.append(event)
        original(event)

    link._on_event = tap
    try:
        yield seen
    finally:
        link._on_event = original


async def timeline_kinds(stack: Stack, incident_id: int | None) -> list[str]:
    async with stack.sessionmaker() as session:
        rows = await session.scalars(
            select(IncidentEvent.kind)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.id)
        )
        return list(rows)


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
        # The caller stays on through the flagged notice (about 5.5 s) and the answer.
        result = await call(stack, "caller-112.xml", caller=number, hold_ms=10000)
        assert result.ok, result.output[-1500:]
        row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
        assert (row.queue, row.operator, row.outcome) == (low, ext, "answered")
        assert (await api.post(f"/v1/operators/{ext}/logout")).status_code == 200
        for queue in (stack.settings.pbx.queue_name, low):
            assert f"PJSIP/{ext}" not in pbx.cli(stack.settings, f"queue show {queue}")
    finally:
        await asyncio.to_thread(phone.stop)
        await api.delete(f"/v1/operators/{ext}")


async def test_with_no_operator_available_the_neighbouring_centre_answers_at_once(
    stack: Stack, api: httpx.AsyncClient, neighbour: Answered
) -> None:
    number = new_number()
    result = await call(stack, "caller-112.xml", caller=number, hold_ms=4000)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert (row.operator, row.outcome) == (f"overflow:{NEIGHBOUR}", "answered")
    assert row.overflowed_at is not None
    assert row.enqueued_at is not None
    # Nobody could be rung: the overflow destination rang at once, not after the wait.
    assert row.overflowed_at - row.enqueued_at < timedelta(seconds=OVERFLOW_AFTER_S)
    answered = await neighbour
    assert answered.returncode == 0, answered.stdout[-1500:]
    body = (await api.get(f"/v1/calls/{row.id}")).json()
    assert body["overflowed_at"] is not None
    kinds = await timeline_kinds(stack, row.incident_id)
    assert kinds.index("call_overflowed") < kinds.index("call_answered")


async def test_after_the_wait_operators_and_the_neighbouring_centre_ring_together(
    stack: Stack, neighbour: Answered
) -> None:
    # Operator 6002 is logged in and available, but away from the desk: the phone rings and
    # nobody picks up. Without overflow the caller would ring 6002 alone forever.
    away = SippOperator(stack.settings, "6002", scenario="operator-noanswer.xml")
    await asyncio.to_thread(away.start)
    number = new_number()
    try:
        with ami_events(stack) as seen:
            result = await long_call(stack, caller=number, hold_ms=24000)
    finally:
        await asyncio.to_thread(away.stop)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert (row.operator, row.outcome) == (f"overflow:{NEIGHBOUR}", "answered")
    assert row.overflowed_at is not None
    assert row.enqueued_at is not None
    assert row.overflowed_at - row.enqueued_at >= timedelta(seconds=OVERFLOW_AFTER_S)
    rings = [e for e in seen if isinstance(e, AgentRinging) and e.uniqueid == row.uniqueid]
    operator_rings = [e.at for e in rings if e.operator == "6002"]
    overflow_rings = [e.at for e in rings if e.overflow]
    # The first attempt rang the operator alone; the one after the wait rang both.
    assert operator_rings[0] < overflow_rings[0]
    assert any(abs((at - overflow_rings[0]).total_seconds()) < 1 for at in operator_rings[1:])
    answered = await neighbour
    assert answered.returncode == 0, answered.stdout[-1500:]


async def test_repeat_caller_is_answered_before_a_caller_who_waited_longer(
    stack: Stack,
) -> None:
    first, repeat = new_number(), new_number()
    # The repeat caller called a minute ago (gave up in the queue): its new call is put ahead.
    earlier = await call(stack, "caller-112-abandon.xml", caller=repeat, hold_ms=0)
    assert earlier.ok, earlier.output[-1500:]
    await wait_for_call(stack, Call.asserted_number == repeat, states={"abandoned"})
    # No operator phone is registered yet: both wait, the first caller first.
    waiting = asyncio.create_task(long_call(stack, caller=first, hold_ms=16000))
    await wait_for_call(stack, Call.asserted_number == first, states={"queued"})
    again = asyncio.create_task(long_call(stack, caller=repeat, hold_ms=5000))
    try:
        await wait_for_call(stack, Call.asserted_number == repeat, states={"queued"})
        with SippOperator(stack.settings, "6001"):
            results = await asyncio.gather(waiting, again)
    finally:
        for task in (waiting, again):
            if not task.done():
                task.cancel()
    assert all(r.ok for r in results), [r.output[-800:] for r in results if not r.ok]
    a = await wait_for_call(stack, Call.asserted_number == first, states={"ended"})
    b = await wait_for_call(stack, Call.asserted_number == repeat, states={"ended"})
    assert (a.operator, b.operator) == ("6001", "6001")
    assert a.enqueued_at is not None
    assert b.enqueued_at is not None
    assert a.answered_at is not None
    assert b.answered_at is not None
    assert a.enqueued_at < b.enqueued_at
    assert b.answered_at < a.answered_at
