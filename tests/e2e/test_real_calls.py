"""Real 112 calls through the real Asterisk: SIPp callers from the simulated carrier, SIPp
operator phones registered with their digest credentials, siaga112 recording every call."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, func, select

from siaga112.auth.service import system_actor
from siaga112.callers.flag_schemas import FlagCreate, FlagKind
from siaga112.callers.flags import create_flag
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident
from siaga112.telephony.ami_events import parse_event, split_transcript
from siaga112_sandbox.sipp import SippOperator, SippResult, run_caller
from tests.e2e.conftest import Stack

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def new_number() -> str:
    return f"+62812{random.randrange(10**6, 10**7)}"


async def call(stack: Stack, scenario: str, *, caller: str | None, hold_ms: int) -> SippResult:
    # SIPp blocks: run it in a thread so the AGI server in this loop can answer Asterisk.
    return await asyncio.to_thread(
        run_caller, stack.settings, scenario, caller=caller, hold_ms=hold_ms, timeout=30
    )


async def wait_for_call(stack: Stack, *conditions: ColumnElement[bool], states: set[str]) -> Call:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with stack.sessionmaker() as session:
            row = await session.scalar(
                select(Call).where(*conditions).order_by(Call.offered_at.desc()).limit(1)
            )
            if row is not None and row.state in states:
                return row
        await asyncio.sleep(0.2)
    raise AssertionError(f"no call in {states} within 20 s")


@pytest.fixture
async def operator(stack: Stack) -> AsyncIterator[SippOperator]:
    op = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(op.start)
    yield op
    await asyncio.to_thread(op.stop)


async def test_caller_with_pai_and_pani_gets_call_and_incident_answered_by_operator(
    stack: Stack, operator: SippOperator
) -> None:
    number = new_number()
    result = await call(stack, "caller-112.xml", caller=number, hold_ms=1500)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert row.source == "agi"
    assert row.dialled_number == "112"
    assert row.caller_id_available is True
    assert row.pani_raw == "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"
    assert row.pai_raw is not None
    assert number in row.pai_raw
    assert (row.operator, row.outcome, row.queue) == ("6001", "answered", "emergency")
    assert row.answered_at is not None
    assert row.enqueued_at is not None
    assert row.ended_at is not None
    assert row.offered_at <= row.enqueued_at <= row.answered_at <= row.ended_at
    async with stack.sessionmaker() as session:
        incident = await session.get(Incident, row.incident_id)
    assert incident is not None
    assert (incident.channel, incident.caller_number) == ("call", number)
    assert incident.origin_linkedid == row.linkedid
    # The dialplan's time of its AGI start reached serve (the URL's t, expanded by Asterisk):
    # the wait before the accept and the whole AGI step as the channel waited for it.
    assert stack.telephony is not None
    metrics = stack.telephony.metrics
    wait, total = metrics.quantile("agi_wait", 0.99), metrics.quantile("agi_total", 0.99)
    assert wait is not None
    assert total is not None
    assert 0 <= wait <= total < 1.5


async def test_anonymous_caller_gets_call_and_incident_marked_without_caller_id(
    stack: Stack, operator: SippOperator
) -> None:
    since = datetime.now(UTC)
    result = await call(stack, "caller-112-anonymous.xml", caller=None, hold_ms=1000)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(
        stack, Call.offered_at >= since, Call.caller_id_available.is_(False), states={"ended"}
    )
    # The raw From number is kept as Asterisk gave it; nothing pretends it is a number.
    assert row.caller_number in {None, "anonymous"}
    assert row.caller_e164 is None
    assert row.operator == "6001"
    async with stack.sessionmaker() as session:
        incident = await session.get(Incident, row.incident_id)
    assert incident is not None
    assert incident.caller_number is None


async def test_caller_hanging_up_in_queue_is_abandoned(stack: Stack) -> None:
    number = new_number()
    # No operator phone registered: the caller waits in the queue, then gives up.
    result = await call(stack, "caller-112-abandon.xml", caller=number, hold_ms=0)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(stack, Call.asserted_number == number, states={"abandoned"})
    assert row.outcome == "abandoned"
    assert row.operator is None
    assert row.answered_at is None
    assert row.ended_at is not None
    assert row.incident_id is not None


async def test_with_siaga112_down_call_reaches_operator_and_is_reconciled(
    stack: Stack, operator: SippOperator
) -> None:
    await stack.stop()
    number = new_number()
    started = time.monotonic()
    result = await call(stack, "caller-112.xml", caller=number, hold_ms=1000)
    # With nothing on the AGI port the call goes straight on to the queue.
    assert result.ok, result.output[-1500:]
    assert time.monotonic() - started < 15
    async with stack.sessionmaker() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(Call).where(Call.asserted_number == number)
            )
            == 0
        )
    await stack.start()
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert row.source == "reconciled"
    assert row.operator == "6001", "the operator answered while siaga112 was down"
    assert row.outcome == "answered"
    assert row.pani_raw is not None
    assert row.pani_raw.endswith("5101000A1B2C3D4E")
    assert row.caller_id_available is True
    assert row.incident_id is not None
    assert row.ended_at is not None
    # Asterisk's own record gives the queue and answer times (service levels need them).
    assert row.enqueued_at is not None
    assert row.answered_at is not None
    assert row.offered_at <= row.enqueued_at <= row.answered_at <= row.ended_at


async def test_replayed_agi_request_makes_no_second_row(stack: Stack) -> None:
    raw = (FIXTURES / "agi" / "incoming-observed.txt").read_text()
    uniqueid = f"9{random.randrange(10**8)}.1"
    # As the dialplan sends it today: with the shared secret (the capture predates it).
    key = stack.settings.agi_secret.get_secret_value()
    replaced = {
        "agi_uniqueid:": f"agi_uniqueid: {uniqueid}",
        "agi_network_script:": f"agi_network_script: incoming?key={key}",
    }
    request = (
        "".join(
            next((v for k, v in replaced.items() if line.startswith(k)), line) + "\n"
            for line in raw.strip("\n").split("\n")
        )
        + "\n"
    ).encode()
    replies = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.settings.agi.port)
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.write(b"200 result=1\n")
        await writer.drain()
        replies.append(line.decode().strip())
        writer.close()
    assert replies[0] == replies[1]
    assert replies[0].startswith("SET VARIABLE SIAGA112_INCIDENT_ID ")
    async with stack.sessionmaker() as session:
        calls = await session.scalar(
            select(func.count()).select_from(Call).where(Call.uniqueid == uniqueid)
        )
        incidents = await session.scalar(
            select(func.count()).select_from(Incident).where(Incident.origin_linkedid == uniqueid)
        )
    assert (calls, incidents) == (1, 1)


async def test_replayed_ami_events_make_no_second_row(stack: Stack) -> None:
    assert stack.telephony is not None
    tracker = stack.telephony.tracker
    messages = split_transcript((FIXTURES / "ami" / "answered-call.txt").read_text())
    events = [e for m in messages if (e := parse_event(m, received_at=datetime.now(UTC)))]
    uniqueids = {getattr(e, "uniqueid", None) for e in events} - {None, ""}
    for _ in range(2):
        for event in events:
            tracker.feed(event)
        await tracker.flush()
    async with stack.sessionmaker() as session:
        rows = (await session.scalars(select(Call).where(Call.uniqueid.in_(uniqueids)))).all()
    assert len(rows) == 1
    assert rows[0].state == "ended"
    assert rows[0].operator == "6001"


async def test_flagged_callers_call_still_reaches_an_operator_via_the_low_queue(
    stack: Stack, operator: SippOperator
) -> None:
    number = new_number()
    async with stack.sessionmaker() as session:
        await create_flag(
            session=session,
            data=FlagCreate(number=number, kind=FlagKind.PRANK, reason="panggilan iseng"),
            actor=system_actor("tests"),
            request_id=None,
        )
        await session.commit()
    # The caller stays on through the notice played to flagged numbers (about 5.5 s, the
    # prompt flagged-notice), then the operator answers.
    result = await call(stack, "caller-112.xml", caller=number, hold_ms=9000)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert row.queue == "emergency-low"
    assert row.operator == "6001"
    assert row.outcome == "answered"
