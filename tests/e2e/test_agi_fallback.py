"""The dialplan tries several siaga112 instances in order within one AGI budget
(SIAGA112_AGI__TARGETS), through the real Asterisk: a first instance that is down (closed port)
costs nothing and the second records the call; a first that accepts and never answers delays
the call by at most its share of the budget, and the call still reaches the queue (recorded by
the second, or reconciled later)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from siaga112.calls.models import Call
from siaga112.config import Settings
from siaga112.pbxconf.render import AGI_TRY_SHARE
from siaga112.telephony.cdr import CdrRecord, read_new_records
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SippOperator, run_caller
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import new_number

# Asterisk's own time between its TIMEOUT firing and the next dialplan step, and SIPp's clock.
SLACK_S = 0.4


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_targets(settings: Settings, targets: list[str]) -> Settings:
    agi = settings.agi.model_copy(update={"targets": targets})
    return settings.model_copy(update={"agi": agi})


@pytest.fixture
async def dialplan(stack: Stack) -> AsyncIterator[list[Settings]]:
    """Renders the dialplan with the targets a test appends and reloads only the dialplan (AMI
    sessions stay up); puts the stack's own dialplan back afterwards."""
    used: list[Settings] = []
    yield used
    await asyncio.to_thread(pbx.reload_dialplan, stack.settings)


async def _use(dialplan: list[Settings], stack: Stack, targets: list[str]) -> None:
    settings = _with_targets(stack.settings, targets)
    dialplan.append(settings)
    await asyncio.to_thread(pbx.reload_dialplan, settings)


@pytest.fixture
async def hanging_listener() -> AsyncIterator[int]:
    """A FastAGI port that accepts and reads but never answers (a hung instance)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield port
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def operator(stack: Stack) -> AsyncIterator[SippOperator]:
    op = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(op.start)
    yield op
    await asyncio.to_thread(op.stop)


async def _call_and_row(stack: Stack, number: str) -> tuple[Call, CdrRecord]:
    cdr = stack.settings.cdr_file
    offset = cdr.stat().st_size if cdr.exists() else 0
    result = await asyncio.to_thread(
        # The caller stays on past the whole AGI budget (Asterisk answers at once).
        run_caller,
        stack.settings,
        caller=number,
        hold_ms=4000,
        timeout=30,
    )
    assert result.ok, result.output[-1500:]
    deadline = time.monotonic() + 20
    row: Call | None = None
    record: CdrRecord | None = None
    while time.monotonic() < deadline and (row is None or record is None):
        async with stack.sessionmaker() as session:
            row = await session.scalar(
                select(Call).where(Call.asserted_number == number, Call.state == "ended")
            )
        if cdr.exists():
            with cdr.open("rb") as fh:
                fh.seek(offset)
                records, _, _ = read_new_records(fh.read())
            record = next((r for r in records if r.is_emergency_leg), None)
        await asyncio.sleep(0.2)
    assert row is not None, "the call has its row"
    assert record is not None, "the call is in Asterisk's CDR file"
    return row, record


async def _baseline_s(stack: Stack) -> float:
    """Channel start to queue of a call with the stack's own dialplan (one target)."""
    _, record = await _call_and_row(stack, new_number())
    return _to_queue_s(record)


def _to_queue_s(record: CdrRecord) -> float:
    assert record.start is not None
    assert record.enqueued is not None, "the call reached the queue"
    return (record.enqueued - record.start) / timedelta(seconds=1)


async def test_a_dead_first_instance_costs_nothing_and_the_second_records_the_call(
    stack: Stack, operator: SippOperator, dialplan: list[Settings]
) -> None:
    baseline = await _baseline_s(stack)
    own = f"127.0.0.1:{stack.settings.agi.port}"
    await _use(dialplan, stack, [f"127.0.0.1:{_closed_port()}", own])
    assert stack.telephony is not None
    requests = stack.telephony.metrics.counters["agi_requests"]
    row, record = await _call_and_row(stack, new_number())
    assert row.source == "agi", "recorded by the second instance's AGI, not reconciled"
    assert row.incident_id is not None
    assert record.agi_status == "SUCCESS"
    assert stack.telephony.metrics.counters["agi_requests"] == requests + 1
    to_queue = _to_queue_s(record)
    print(
        f"closed first target: channel start to queue {to_queue * 1000:.0f} ms "
        f"(one target: {baseline * 1000:.0f} ms)"
    )
    assert to_queue - baseline < 0.25, "a closed port costs (next to) nothing"


async def test_a_hung_first_instance_delays_the_call_by_its_share_of_the_budget_only(
    stack: Stack, operator: SippOperator, dialplan: list[Settings], hanging_listener: int
) -> None:
    baseline = await _baseline_s(stack)
    own = f"127.0.0.1:{stack.settings.agi.port}"
    await _use(dialplan, stack, [f"127.0.0.1:{hanging_listener}", own])
    budget_s = stack.settings.agi.budget_ms / 1000
    row, record = await _call_and_row(stack, new_number())
    delay = _to_queue_s(record) - baseline
    print(
        f"hung first target: {delay * 1000:.0f} ms later to the queue than with one target "
        f"(budget {budget_s * 1000:.0f} ms), agi status {record.agi_status}, "
        f"row from {row.source}"
    )
    assert delay < budget_s + SLACK_S, "the whole AGI step stays within its budget"
    assert delay > budget_s * AGI_TRY_SHARE - SLACK_S, "the first try did wait its share"
    # The second had what was left of the budget: it recorded the call, or reconciliation did.
    assert row.incident_id is not None
    assert row.source in {"agi", "cdr"}


async def test_every_target_carries_the_secret_and_a_success_ends_the_tries(
    stack: Stack, operator: SippOperator, dialplan: list[Settings]
) -> None:
    """The key travels to every target (each instance checks it, and its allow-list, as
    before); once one try succeeds the next target is not asked."""
    own = f"127.0.0.1:{stack.settings.agi.port}"
    await _use(dialplan, stack, [own, own])
    conf = (stack.settings.pbx_root / "etc" / "asterisk" / "extensions.conf").read_text()
    key = stack.settings.agi_secret.get_secret_value()
    assert conf.count(f"agi://{own}/incoming?key={key}&t=${{STRFTIME(,,%s.%6q)}},") >= 2
    assert stack.telephony is not None
    requests = stack.telephony.metrics.counters["agi_requests"]
    row, record = await _call_and_row(stack, new_number())
    assert (record.agi_status, row.source) == ("SUCCESS", "agi")
    assert stack.telephony.metrics.counters["agi_requests"] == requests + 1
