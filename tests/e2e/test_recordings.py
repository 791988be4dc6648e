"""Call recording through the real Asterisk: a speaking SIPp caller answered by the demo
operator is recorded (MixMonitor from the answer), the file is linked to the call, holds audio
and downloads as WAV for a supervisor (audited) but not for an operator; a recording that
cannot be written never costs the call; a call recorded while siaga112 was down is linked
when it comes back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import struct
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.calls.models import Call
from siaga112.config import RecordingSettings
from siaga112.metrics import Metrics
from siaga112.recordings.files import parse_wav_header
from siaga112.recordings.models import Recording
from siaga112.recordings.worker import RecordingWorker
from siaga112_sandbox.sipp import SippOperator
from tests.conftest import auth
from tests.e2e.conftest import Stack
from tests.e2e.test_operators import agency_phone_answers_one_call, udp_in_use
from tests.e2e.test_real_calls import call, new_number, wait_for_call

HOLD_MS = 3000


@pytest.fixture
async def phone(stack: Stack) -> AsyncIterator[SippOperator]:
    op = SippOperator(stack.settings, "6001")
    await asyncio.to_thread(op.start)
    yield op
    await asyncio.to_thread(op.stop)


@pytest.fixture
def worker(stack: Stack) -> RecordingWorker:
    return RecordingWorker(
        sessionmaker=stack.sessionmaker,
        settings=RecordingSettings(settle_s=1.0),
        root=stack.settings.recordings_dir,
        metrics=Metrics(),
    )


async def linked_recording(stack: Stack, worker: RecordingWorker, row: Call) -> Recording:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await worker.sweep()
        async with stack.sessionmaker() as session:
            rec = await session.scalar(select(Recording).where(Recording.call_id == row.id))
        if rec is not None:
            return rec
        await asyncio.sleep(0.5)
    raise AssertionError(f"no recording linked to call {row.uniqueid} within 20 s")


def peak_amplitude(wav: bytes) -> int:
    info = parse_wav_header(wav[:512], len(wav))
    assert info is not None
    data = wav[info.data_offset : info.data_offset + info.data_bytes]
    samples = struct.unpack(f"<{len(data) // 2}h", data[: len(data) // 2 * 2])
    return max((abs(s) for s in samples), default=0)


async def test_answered_call_is_recorded_linked_to_the_call_and_downloads_as_audio(
    stack: Stack, phone: SippOperator, worker: RecordingWorker, engine: AsyncEngine
) -> None:
    number = new_number()
    result = await call(stack, "caller-112-talk.xml", caller=number, hold_ms=HOLD_MS)
    assert result.ok, result.output[-1500:]
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert (row.operator, row.outcome) == ("6001", "answered")
    assert row.answered_at is not None
    assert row.ended_at is not None

    rec = await linked_recording(stack, worker, row)
    assert (rec.format, rec.status, rec.uniqueid) == ("wav", "available", row.uniqueid)
    # From the operator's answer to the caller's hang-up.
    assert row.answered_at - timedelta(seconds=2) <= rec.started_at <= row.ended_at
    assert rec.duration_s is not None
    assert 0.5 < rec.duration_s < HOLD_MS / 1000 + 2
    path = stack.settings.recordings_dir / rec.path
    wav = path.read_bytes()
    assert len(wav) == rec.size_bytes > 44 + 8000
    assert hashlib.sha256(wav).hexdigest() == rec.sha256
    # The caller spoke (RTP from the pcap): the file holds audio, not silence.
    assert peak_amplitude(wav) > 500

    app = create_app(stack.settings, engine=engine, sessionmaker=stack.sessionmaker)
    async with stack.sessionmaker() as session:
        supervisor = await create_key(
            session=session, name="e2e-supervisor", role=Role.SUPERVISOR, actor=system_actor("t")
        )
        operator = await create_key(
            session=session, name="e2e-operator", role=Role.OPERATOR, actor=system_actor("t")
        )
        await session.commit()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as api:
        denied = await api.get(f"/v1/calls/{row.id}/recording", headers=auth(operator.raw))
        assert denied.status_code == 403
        r = await api.get(f"/v1/calls/{row.id}/recording", headers=auth(supervisor.raw))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/wav"
        assert r.content[:4] == b"RIFF"
        assert r.content[8:12] == b"WAVE"
        assert r.content == wav
        detail = await api.get(f"/v1/calls/{row.id}", headers=auth(operator.raw))
        assert [x["id"] for x in detail.json()["recordings"]] == [rec.id]
    async with stack.sessionmaker() as session:
        audit = await session.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "recording.downloaded",
                AuditEvent.entity_id == str(rec.id),
            )
        )
    assert audit is not None
    assert audit.actor == "key:e2e-supervisor"
    assert audit.after is not None
    assert audit.after["call_id"] == str(row.id)


async def test_recording_goes_on_through_a_transfer_to_an_agency(
    stack: Stack, phone: SippOperator, worker: RecordingWorker, engine: AsyncEngine
) -> None:
    assert stack.telephony is not None
    app = create_app(
        stack.settings,
        engine=engine,
        sessionmaker=stack.sessionmaker,
        call_control=stack.telephony.control,
    )
    async with stack.sessionmaker() as session:
        key = await create_key(
            session=session, name="e2e-rec-admin", role=Role.ADMIN, actor=system_actor("t")
        )
        await session.commit()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://siaga112.test", headers=auth(key.raw)
    ) as api:
        r = await api.post(
            "/v1/agencies",
            json={"code": "bpbd_rec_e2e", "name": "BPBD", "kind": "disaster", "phone": "+62114"},
        )
        assert r.status_code == 201, r.text
        host, port = stack.settings.pbx.outbound_trunk.rsplit(":", 1)
        agency = asyncio.create_task(
            asyncio.to_thread(agency_phone_answers_one_call, host, int(port), 25)
        )
        for _ in range(100):
            if udp_in_use(host, int(port)):
                break
            await asyncio.sleep(0.05)
        number = new_number()
        caller = asyncio.create_task(
            call(stack, "caller-112-talk.xml", caller=number, hold_ms=6000)
        )
        row = await wait_for_call(stack, Call.asserted_number == number, states={"answered"})
        r = await api.post(f"/v1/calls/{row.id}/transfer", json={"agency_id": r.json()["id"]})
        assert r.status_code == 200, r.text
        transferred = datetime.now(UTC)
        result = await caller
    assert result.ok, result.output[-1500:]
    assert (await agency).returncode == 0
    ended = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    rec = await linked_recording(stack, worker, ended)
    assert rec.duration_s is not None
    # One file from the operator's answer through the agency's part of the conversation.
    with_operator = (transferred - rec.started_at).total_seconds()
    assert rec.duration_s > with_operator + 2, (rec.duration_s, with_operator)
    assert rec.ended_at > transferred + timedelta(seconds=2)


@pytest.fixture
def unwritable_recordings(stack: Stack) -> Iterator[Path]:
    """The recordings directory tree read-only for Asterisk (as a full or failed disk)."""
    root = stack.settings.recordings_dir
    root.mkdir(parents=True, exist_ok=True)
    dirs = [root, *(p for p in root.rglob("*") if p.is_dir())]
    modes = {d: stat.S_IMODE(d.stat().st_mode) for d in dirs}
    for d in dirs:
        os.chmod(d, 0o500)
    try:
        yield root
    finally:
        for d, mode in modes.items():
            os.chmod(d, mode)


async def test_call_goes_on_when_the_recording_cannot_be_written(
    stack: Stack, phone: SippOperator, unwritable_recordings: Path
) -> None:
    number = new_number()
    started = time.monotonic()
    result = await call(stack, "caller-112-talk.xml", caller=number, hold_ms=HOLD_MS)
    assert result.ok, result.output[-1500:]
    assert time.monotonic() - started < 15
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert (row.operator, row.outcome) == ("6001", "answered")
    written = await asyncio.to_thread(
        lambda: list(unwritable_recordings.rglob(f"{row.uniqueid}-*"))
    )
    assert written == []


async def test_call_recorded_while_siaga112_was_down_is_linked_when_it_is_back(
    stack: Stack, phone: SippOperator, worker: RecordingWorker
) -> None:
    await stack.stop()
    number = new_number()
    try:
        result = await call(stack, "caller-112-talk.xml", caller=number, hold_ms=HOLD_MS)
    finally:
        await stack.start()
    assert result.ok, result.output[-1500:]
    # The call row comes from Asterisk's CDR file, the recording from its file name.
    row = await wait_for_call(stack, Call.asserted_number == number, states={"ended"})
    assert row.source == "reconciled"
    rec = await linked_recording(stack, worker, row)
    assert rec.uniqueid == row.uniqueid
    assert rec.size_bytes > 44 + 8000
