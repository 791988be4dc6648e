"""Asterisk logs no ERROR through its start (module loads, the PJSIP realtime lookups it makes
in siaga112's database), an operator created through the API registering and logging in, and a
real 112 call that operator answers."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from siaga112.calls.models import Call
from siaga112_sandbox import pbx
from siaga112_sandbox.sipp import SippOperator
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import call, new_number, wait_for_call

EXTENSION = "7501"
PHONE_PORT = 5085
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# Every log entry starts with its time stamp; the lines after it (PostgreSQL's error text,
# for one) belong to that entry.
_ENTRY = re.compile(r"^\[\d{4}-\d\d-\d\d ")


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def error_entries(path: Path, start: int) -> list[str]:
    """The ERROR entries Asterisk wrote to ``path`` from byte ``start`` on, without colours."""
    with path.open("rb") as f:
        f.seek(start if start <= _size(path) else 0)  # a log that was replaced: all of it
        text = _COLOUR.sub("", f.read().decode(errors="replace"))
    entries: list[list[str]] = []
    for line in text.splitlines():
        if _ENTRY.match(line) or not entries:
            entries.append([line])
        else:
            entries[-1].append(line)
    return ["\n".join(e) for e in entries if "ERROR[" in e[0]]


async def _until_ready(stack: Stack, within: float) -> None:
    assert stack.telephony is not None
    deadline = time.monotonic() + within
    while not stack.telephony.ami.ready:
        assert time.monotonic() < deadline, f"AMI not logged in again within {within} s"
        await asyncio.sleep(0.1)


async def _operator_state(api: httpx.AsyncClient, state: str) -> None:
    deadline = time.monotonic() + 10
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        body = (await api.get(f"/v1/operators/{EXTENSION}")).json()
        if body.get("state") == state:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"operator not {state} within 10 s: {body}")


async def test_asterisk_logs_no_error_from_start_through_a_realtime_operators_call(
    stack: Stack, api: httpx.AsyncClient
) -> None:
    log = pbx.log_file(stack.settings)
    # Started afresh here, so that the part of the log read below holds a whole start-up,
    # wherever this test runs in the session (and none of the errors other tests provoke on
    # purpose, e.g. a FastAGI server that is down).
    await asyncio.to_thread(pbx.down, stack.settings)
    start = _size(log)
    await asyncio.to_thread(pbx.up, stack.settings)
    await _until_ready(stack, 30)

    r = await api.post("/v1/operators", json={"extension": EXTENSION, "name": "Sari"})
    assert r.status_code == 201, r.text
    phone = SippOperator(
        stack.settings, EXTENSION, port=PHONE_PORT, password=r.json()["sip"]["password"]
    )
    await asyncio.to_thread(phone.start)
    try:
        assert (await api.post(f"/v1/operators/{EXTENSION}/login")).status_code == 200
        await _operator_state(api, "idle")
        for command in ("pjsip show endpoints", "pjsip show aors", "pjsip show contacts"):
            assert EXTENSION in pbx.cli(stack.settings, command)
        number = new_number()
        result = await call(stack, "caller-112.xml", caller=number, hold_ms=1000)
        assert result.ok, result.output[-1500:]
        row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
        assert (row.operator, row.outcome) == (EXTENSION, "answered")
    finally:
        await asyncio.to_thread(phone.stop)
    assert (await api.delete(f"/v1/operators/{EXTENSION}")).status_code == 204

    assert _size(log) > start, f"Asterisk wrote nothing to {log}"
    errors = error_entries(log, start)
    assert not errors, f"Asterisk logged {len(errors)} ERROR entries:\n" + "\n".join(errors)
