"""After siaga112 or Asterisk restarts, siaga112 knows at once what is happening now: the AMI
link logs in again, and a caller already talking to an operator (answered while siaga112 was
away) has its call row as answered, before Asterisk writes its own record at hang-up."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select

from siaga112.calls.models import Call
from siaga112.metrics import Metrics
from siaga112.runtime.telephony import Telephony
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SippOperator
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import call, new_number, wait_for_call


async def _until(predicate: object, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {within} s")


async def test_call_answered_while_siaga112_was_away_is_known_on_return(
    stack: Stack, operator: SippOperator
) -> None:
    await stack.stop()
    number = new_number()
    talking = asyncio.create_task(call(stack, "caller-112.xml", caller=number, hold_ms=9000))
    await asyncio.sleep(3.5)  # answered at once by 6001, still talking
    back = time.monotonic()
    telephony = await stack.start()
    row = await wait_for_call(stack, Call.caller_e164 == number, states={"answered"})
    assert time.monotonic() - back < 10
    assert not talking.done(), "the caller was still on the line"
    assert row.operator == "6001"
    assert row.queue == "emergency"
    assert row.answered_at is not None
    assert row.incident_id is not None
    assert telephony.metrics.counters["ami_resync_connected_callers"] >= 1
    result = await talking
    assert result.ok, result.output[-1500:]
    # At hang-up the AMI events end the call; Asterisk's record adds the headers and the
    # exact answer time, which is earlier than the moment siaga112 came back.
    ended = await wait_for_call(stack, Call.caller_e164 == number, states={"ended"})
    assert ended.id == row.id
    deadline = time.monotonic() + 40
    while ended.pani_raw is None and time.monotonic() < deadline:
        await telephony.reconciler.run_once()
        async with stack.sessionmaker() as session:
            ended = (await session.scalars(select(Call).where(Call.id == row.id))).one()
        await asyncio.sleep(0.5)
    assert ended.pani_raw is not None, "Asterisk's record completes the call"
    assert ended.asserted_number is not None
    assert number in ended.asserted_number
    assert ended.answered_at is not None
    assert row.answered_at is not None
    assert ended.answered_at <= row.answered_at


async def test_ami_link_logs_in_again_after_asterisk_restarts(
    stack: Stack, operator: SippOperator
) -> None:
    telephony = stack.telephony
    assert telephony is not None
    logins = telephony.metrics.counters["ami_logins"]
    await asyncio.to_thread(pbx.down, stack.settings)
    await _until(lambda: not telephony.ami.ready, 10)
    assert (await telephony.readiness_ami())[0] is False
    await asyncio.to_thread(pbx.up, stack.settings)
    await _until(lambda: telephony.ami.ready, 30)
    assert telephony.metrics.counters["ami_logins"] == logins + 1
    assert (await telephony.readiness_ami())[0] is True
    # Calls after the restart are tracked live again (the operator's phone re-registers).
    await asyncio.to_thread(operator.stop)
    await asyncio.to_thread(operator.start)
    number = new_number()
    result = await call(stack, "caller-112.xml", caller=number, hold_ms=1000)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(stack, Call.asserted_number.contains(number), states={"ended"})
    assert (row.source, row.operator, row.outcome) == ("agi", "6001", "answered")
    assert row.answered_at is not None


async def test_serve_answers_agi_while_the_worker_follows_the_ami_events(
    stack: Stack, operator: SippOperator
) -> None:
    """The two processes' roles, here two runtimes in one loop: one answers the AGI step and
    keeps an actions-only AMI session (Asterisk sends it no events), the other follows the
    event stream. A real call is recorded by the first and tracked to its end by the second."""
    await stack.stop()
    agi_metrics, event_metrics = Metrics(), Metrics()
    agi = Telephony(
        settings=stack.settings, sessionmaker=stack.sessionmaker, metrics=agi_metrics, role="agi"
    )
    events = Telephony(
        settings=stack.settings,
        sessionmaker=stack.sessionmaker,
        metrics=event_metrics,
        role="events",
    )
    try:
        await events.start()
        await agi.start()
        await _until(lambda: agi_metrics.counters["ami_events_off"] == 1 and events.ami.ready, 15)
        assert await agi.readiness_ami() == (True, "logged in (actions only)")
        seen_by_agi = agi_metrics.counters["ami_events"]
        number = new_number()
        result = await call(stack, "caller-112.xml", caller=number, hold_ms=1000)
        assert result.ok, result.output[-1500:]
        row = await wait_for_call(stack, Call.asserted_number.contains(number), states={"ended"})
        assert (row.source, row.operator, row.outcome) == ("agi", "6001", "answered")
        assert row.answered_at is not None
        assert agi_metrics.counters["agi_requests"] >= 1
        assert agi_metrics.counters["ami_events"] == seen_by_agi, "no events for serve"
        assert event_metrics.counters["ami_events"] > 10
        assert event_metrics.counters["agi_requests"] == 0
    finally:
        await agi.stop()
        await events.stop()
        await stack.start()
