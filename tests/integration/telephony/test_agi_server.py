"""The FastAGI server over a real socket, with the real database behind it: it answers within
its budget whatever happens, and rejects what is not an AGI request without falling over."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.calls.models import Call
from siaga112.calls.recorder import CallFacts, RecordedCall, record_incoming
from siaga112.metrics import Metrics
from siaga112.telephony.agi_server import AgiServer


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


KEY = "dialplan-secret-for-tests"


def agi_request(
    uniqueid: str, *, asserted: str | None = None, key: str = KEY, t: str | None = None
) -> bytes:
    # A number of its own: another test's call from the same number within the repeat window
    # would (rightly) make this one a repeat caller.
    asserted = asserted or f"+62815{uuid.uuid4().int % 10**7:07d}"
    query = f"key={key}" + ("" if t is None else f"&t={t}")
    lines = {
        "agi_network": "yes",
        "agi_network_script": f"incoming?{query}",
        "agi_request": f"agi://127.0.0.1:4573/incoming?{query}",
        "agi_channel": "PJSIP/carrier-00000001",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1",
        "agi_callerid": "0" + asserted[3:],
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_dnid": "112",
        "agi_context": "from-carrier",
        "agi_extension": "112",
        "agi_priority": "30",
        "agi_threadid": "140000000000000",
        "agi_linkedid": uniqueid,
        "agi_arg_1": "112",
        "agi_arg_2": b64(f"<sip:{asserted}@carrier.example>"),
        "agi_arg_3": b64("3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"),
        "agi_arg_4": "",
        "agi_arg_5": "allowed_not_screened",
    }
    return ("".join(f"{k}: {v}\n" for k, v in lines.items()) + "\n").encode()


async def _serve(server: AgiServer) -> int:
    await server.start()
    assert server._server is not None
    port: int = server._server.sockets[0].getsockname()[1]
    return port


async def _talk(port: int, payload: bytes) -> list[str]:
    """Plays Asterisk: sends the request, answers every command with 200, collects them."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    commands = []
    while line := await asyncio.wait_for(reader.readline(), 5):
        commands.append(line.decode().strip())
        writer.write(b"200 result=1\n")
        await writer.drain()
    writer.close()
    return commands


@pytest.fixture
async def recording_server(
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> AsyncIterator[tuple[AgiServer, Metrics]]:
    metrics = Metrics()

    async def record(facts: CallFacts, at: datetime) -> RecordedCall:
        async with sessionmaker() as session:
            rec = await record_incoming(session=session, facts=facts, at=at)
            await session.commit()
            return rec

    server = AgiServer(
        host="127.0.0.1", port=0, budget_s=1.0, record_call=record, metrics=metrics, secret=KEY
    )
    yield server, metrics
    await server.stop()


async def test_incoming_records_call_and_sets_incident_id(
    recording_server: tuple[AgiServer, Metrics],
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    server, metrics = recording_server
    port = await _serve(server)
    uid = f"1763884800.{uuid.uuid4().int % 10**6}"
    number = "+6281577700011"
    commands = await _talk(port, agi_request(uid, asserted=number))
    async with sessionmaker() as session:
        call = (await session.scalars(select(Call).where(Call.uniqueid == uid))).one()
    assert commands == [f"SET VARIABLE SIAGA112_INCIDENT_ID {call.incident_id}"]
    assert call.pani_raw == "3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E"
    assert call.asserted_number is not None
    assert number in call.asserted_number
    assert metrics.counters["agi_requests"] == 1
    # The same request again (Asterisk retried): same incident, no second row.
    assert await _talk(port, agi_request(uid, asserted=number)) == commands


async def test_slow_database_does_not_hold_the_call() -> None:
    metrics = Metrics()
    finished = asyncio.Event()

    async def slow(facts: CallFacts, at: datetime) -> RecordedCall:
        await asyncio.sleep(0.5)
        finished.set()
        return RecordedCall(call_id=uuid.uuid4(), incident_id=1, call_created=True)

    server = AgiServer(
        host="127.0.0.1", port=0, budget_s=0.1, record_call=slow, metrics=metrics, secret=KEY
    )
    port = await _serve(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    commands = await _talk(port, agi_request("1.1"))
    elapsed = loop.time() - started
    assert commands == []  # no incident id in time: the dialplan goes on without it
    assert elapsed < 0.4
    assert metrics.counters["agi_over_budget"] == 1
    await server.stop()  # waits for the write that outlived the budget
    assert finished.is_set()


async def test_failing_database_is_counted_and_call_goes_on() -> None:
    metrics = Metrics()

    async def broken(facts: CallFacts, at: datetime) -> RecordedCall:
        raise ConnectionError("database down")

    server = AgiServer(
        host="127.0.0.1", port=0, budget_s=1.0, record_call=broken, metrics=metrics, secret=KEY
    )
    port = await _serve(server)
    assert await _talk(port, agi_request("2.2")) == []
    await asyncio.sleep(0)
    assert metrics.counters["agi_write_failed"] == 1
    await server.stop()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"agi_network: yes\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"x" * 40_000,
        b"agi_network_script: other\n\n",
    ],
    ids=["empty", "truncated", "http", "oversized", "unknown-script"],
)
async def test_garbage_is_rejected_and_server_keeps_serving(
    recording_server: tuple[AgiServer, Metrics], payload: bytes
) -> None:
    server, metrics = recording_server
    port = await _serve(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert metrics.counters["agi_rejected"] == 1
    assert metrics.counters["agi_requests"] == 0
    # still answering real requests
    commands = await _talk(port, agi_request(f"3.{uuid.uuid4().int % 10**6}"))
    assert commands[0].startswith("SET VARIABLE SIAGA112_INCIDENT_ID ")


@pytest.mark.parametrize(
    ("flagged", "repeat", "expected"),
    [
        (
            True,
            False,
            ["SET VARIABLE SIAGA112_QUEUE emergency-low", "SET VARIABLE SIAGA112_FLAGGED 1"],
        ),
        (False, True, ["SET VARIABLE SIAGA112_PRIORITY 10"]),
        (False, False, []),
        (
            True,
            True,
            ["SET VARIABLE SIAGA112_QUEUE emergency-low", "SET VARIABLE SIAGA112_FLAGGED 1"],
        ),
    ],
    ids=["flagged", "repeat", "plain", "flagged-repeat"],
)
async def test_flagged_numbers_go_to_the_low_queue_and_repeat_callers_ahead(
    flagged: bool, repeat: bool, expected: list[str]
) -> None:
    async def record(facts: CallFacts, at: datetime) -> RecordedCall:
        return RecordedCall(
            call_id=uuid.uuid4(),
            incident_id=7,
            call_created=True,
            flagged=flagged,
            repeat_caller=repeat,
        )

    server = AgiServer(
        host="127.0.0.1",
        port=0,
        budget_s=1.0,
        record_call=record,
        metrics=Metrics(),
        low_queue="emergency-low",
        repeat_priority=10,
        secret=KEY,
    )
    port = await _serve(server)
    commands = await _talk(port, agi_request(f"4.{uuid.uuid4().int % 10**6}"))
    await server.stop()
    assert commands == ["SET VARIABLE SIAGA112_INCIDENT_ID 7", *expected]


async def test_a_request_without_the_dialplans_secret_opens_nothing(
    recording_server: tuple[AgiServer, Metrics],
) -> None:
    # The probe's reproduction: anyone who reaches the port could open a fake 112 call.
    server, metrics = recording_server
    port = await _serve(server)
    for key in ("", "wrong-secret-wrong-secret"):
        assert await _talk(port, agi_request(f"9.{uuid.uuid4().int % 10**6}", key=key)) == []
    assert "siaga112_agi_rejected_secret_total 2" in metrics.render()
    assert "siaga112_agi_calls_recorded_total" not in metrics.render()
    await server.stop()


async def test_a_request_from_outside_the_allowed_networks_is_refused_unread() -> None:
    recorded: list[CallFacts] = []

    async def record(facts: CallFacts, at: datetime) -> RecordedCall:
        recorded.append(facts)
        return RecordedCall(call_id=uuid.uuid4(), incident_id=1, call_created=True)

    metrics = Metrics()
    server = AgiServer(
        host="127.0.0.1", port=0, budget_s=1.0, record_call=record, metrics=metrics,
        secret=KEY, allow_from=["10.9.8.0/24"],
    )  # fmt: skip
    port = await _serve(server)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Closed at once, before the request is read: the write may or may not get through.
    with contextlib.suppress(ConnectionError):
        writer.write(agi_request(f"8.{uuid.uuid4().int % 10**6}"))
        await writer.drain()
    with contextlib.suppress(ConnectionError):
        assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert recorded == []
    assert "siaga112_agi_rejected_source_total 1" in metrics.render()
    await server.stop()


async def test_the_wait_before_the_accept_is_measured_from_the_dialplans_time(
    recording_server: tuple[AgiServer, Metrics],
) -> None:
    """The dialplan puts the time of its AGI start in the URL (t): the time before serve accepted
    the connection (agi_wait) and in all (agi_total) are observed; a t that is no time, or is
    more than a minute off serve's clock, is not."""
    server, metrics = recording_server
    port = await _serve(server)
    await _talk(
        port, agi_request(f"1763884801.{uuid.uuid4().int % 10**6}", t=f"{time.time() - 0.4:.6f}")
    )
    wait, total = metrics.quantile("agi_wait", 0.5), metrics.quantile("agi_total", 0.5)
    handling = metrics.quantile("agi_handling", 0.5)
    assert wait is not None
    assert 0.4 <= wait < 5
    assert total is not None
    assert handling is not None
    assert total >= wait + handling * 0.99
    for bad in ("", "soon", "nan", "inf", f"{time.time() - 3600:.6f}", f"{time.time() + 3600:.0f}"):
        await _talk(port, agi_request(f"1763884802.{uuid.uuid4().int % 10**6}", t=bad))
    assert metrics.counters["agi_requests"] == 7
    assert "siaga112_agi_wait_seconds_count 1\n" in metrics.render()
    assert "siaga112_agi_total_seconds_count 1\n" in metrics.render()
    # A dialplan time a little ahead of serve's clock (another host's) counts as no wait.
    await _talk(
        port, agi_request(f"1763884803.{uuid.uuid4().int % 10**6}", t=f"{time.time() + 2:.6f}")
    )
    assert "siaga112_agi_wait_seconds_count 2\n" in metrics.render()
    assert metrics.quantile("agi_wait", 0.0) == 0.0
