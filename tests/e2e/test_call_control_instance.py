"""A console and API instance apart from the one that answers AGI: `siaga112 serve --api-only
--call-control` (a real process) keeps an actions-only AMI link to the real Asterisk, so a call
answered through the tests' stack is hung up through that instance's API."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.models import Call
from siaga112_sandbox.procs import free_port
from siaga112_sandbox.sipp import SippOperator
from tests.conftest import auth
from tests.e2e.conftest import Stack
from tests.e2e.test_real_calls import call, new_number, wait_for_call


@pytest.fixture
async def control_api(stack: Stack, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """`siaga112 serve --api-only --call-control --no-worker` on a free port, with the stack's
    database and Asterisk; an admin key for it."""
    port = free_port()
    env = dict(os.environ) | {
        "SIAGA112_DATABASE_URL": stack.settings.database_url_str,
        "SIAGA112_API__PORT": str(port),
        "SIAGA112_PBX__CDR_FILE_NAME": stack.settings.pbx.cdr_file_name,
    }
    command = [sys.executable, "-m", "siaga112", "serve", "--api-only", "--call-control"]
    with (tmp_path / "serve.log").open("wb") as out:
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [*command, "--no-worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        async with stack.sessionmaker() as session:
            key = await create_key(
                session=session, name="e2e-control", role=Role.ADMIN, actor=system_actor("tests")
            )
            await session.commit()
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=auth(key.raw), timeout=10
        ) as client:
            deadline = time.monotonic() + 60
            body: object = None
            while time.monotonic() < deadline:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                try:
                    body = (await client.get("/readyz")).json()
                    if isinstance(body, dict) and body.get("ready"):
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"serve --api-only --call-control not ready: {body}")
            yield client
    finally:
        await asyncio.to_thread(_stop, proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def test_api_only_instance_hangs_up_a_call_answered_elsewhere(
    stack: Stack, control_api: httpx.AsyncClient
) -> None:
    components = (await control_api.get("/readyz")).json()["components"]
    assert components["ami"] == {"ready": True, "detail": "logged in (actions only)"}
    assert "agi" not in components  # no AGI server in this instance
    number = new_number()
    with SippOperator(stack.settings, "6001") as _:
        caller = asyncio.create_task(call(stack, "caller-112.xml", caller=number, hold_ms=15000))
        row = await wait_for_call(stack, Call.asserted_number == number, states={"answered"})
        started = time.monotonic()
        r = await control_api.post(f"/v1/calls/{row.id}/hangup")
        assert r.status_code == 200, r.text
        ended = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
        assert time.monotonic() - started < 10
        assert ended.ended_at is not None
        await caller  # the caller expected to hang up itself: its result is moot
