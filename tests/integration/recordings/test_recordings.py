"""Call recordings against PostgreSQL and real files in a temporary recordings directory:
linking by file name (also for calls siaga112 learned of late), downloads only for supervisors
and admins with every download audited, 404 for none or expired, legal hold, and the retention
purge (rows marked purged by the system, files deleted, held ones kept, orphans cleaned)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.app import create_app
from siaga112.audit.models import AuditEvent
from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from siaga112.config import RecordingSettings, Settings
from siaga112.incidents.models import Incident, IncidentEvent
from siaga112.metrics import Metrics
from siaga112.recordings.models import Recording
from siaga112.recordings.service import SweepResult, purge_expired, sweep_recordings
from siaga112.recordings.worker import RecordingWorker
from tests.conftest import auth
from tests.unit.test_recording_files import pcm_wav

Sessionmaker = async_sessionmaker[AsyncSession]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "recordings"
    path.mkdir()
    return path


@pytest.fixture
def rec_settings(settings: Settings, root: Path) -> Settings:
    return settings.model_copy(
        update={"pbx": settings.pbx.model_copy(update={"recordings_path": root})}
    )


@pytest.fixture
async def api(
    rec_settings: Settings, engine: AsyncEngine, sessionmaker: Sessionmaker
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(rec_settings, engine=engine, sessionmaker=sessionmaker)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://siaga112.test") as c:
        yield c


def new_uniqueid() -> str:
    return f"{datetime.now(UTC).timestamp():.0f}.{uuid.uuid4().int % 10**7}"


async def add_call(
    sessionmaker: Sessionmaker,
    *,
    uniqueid: str | None = None,
    ended: bool = True,
    at: datetime | None = None,
) -> Call:
    uid = uniqueid or new_uniqueid()
    at = at or datetime.now(UTC)
    async with sessionmaker() as session:
        incident = Incident(
            status="new", channel="call", priority=2, origin_linkedid=uid, created_by="tests"
        )
        session.add(incident)
        await session.flush()
        call = Call(
            uniqueid=uid,
            linkedid=uid,
            caller_number="+6281299900011",
            caller_id_available=True,
            state="ended" if ended else "answered",
            source="agi",
            queue="emergency",
            operator="6001",
            outcome="answered" if ended else None,
            offered_at=at - timedelta(seconds=20),
            answered_at=at - timedelta(seconds=10),
            ended_at=at if ended else None,
            incident_id=incident.id,
        )
        session.add(call)
        await session.commit()
        return call


def write_recording(
    root: Path, uniqueid: str, *, answered_at: datetime, seconds: float = 2.0, quiet_s: float = 10
) -> tuple[str, bytes]:
    """A recording as Asterisk leaves it: date directory, name, WAV bytes, last write time."""
    relative = f"{answered_at:%Y/%m/%d}/{uniqueid}-{int(answered_at.timestamp())}.wav"
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pcm_wav(seconds)
    path.write_bytes(data)
    mtime = (answered_at + timedelta(seconds=seconds)).timestamp()
    mtime = min(mtime, datetime.now(UTC).timestamp() - quiet_s)
    os.utime(path, (mtime, mtime))
    return relative, data


async def sweep(sessionmaker: Sessionmaker, root: Path, *, days: int = 2) -> SweepResult:
    return await sweep_recordings(
        sessionmaker=sessionmaker,
        root=root,
        days=days,
        now=datetime.now(UTC),
        settle_s=2,
        stale_s=600,
    )


async def recording_of(sessionmaker: Sessionmaker, call: Call) -> Recording:
    async with sessionmaker() as session:
        row = await session.scalar(select(Recording).where(Recording.call_id == call.id))
    assert row is not None
    return row


async def audits(sessionmaker: Sessionmaker, action: str) -> list[AuditEvent]:
    async with sessionmaker() as session:
        return list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


async def test_finished_recording_is_linked_once_with_duration_size_and_hash(
    sessionmaker: Sessionmaker, root: Path
) -> None:
    call = await add_call(sessionmaker)
    answered = datetime.now(UTC) - timedelta(seconds=30)
    relative, data = write_recording(root, call.uniqueid, answered_at=answered, seconds=2.0)

    result = await sweep(sessionmaker, root)
    assert (result.linked, result.waiting_for_call, result.unfinished) == (1, 0, 0)
    row = await recording_of(sessionmaker, call)
    assert row.path == relative
    assert (row.format, row.status, row.legal_hold) == ("wav", "available", False)
    assert row.started_at == answered.replace(microsecond=0)
    assert row.duration_s == pytest.approx(2.0)
    assert row.size_bytes == len(data)
    assert row.sha256 == hashlib.sha256(data).hexdigest()

    linked = await audits(sessionmaker, "recording.linked")
    assert [(a.actor, a.entity_id) for a in linked][-1] == ("system:recordings", str(row.id))
    async with sessionmaker() as session:
        kinds = list(
            await session.scalars(
                select(IncidentEvent.kind).where(IncidentEvent.incident_id == call.incident_id)
            )
        )
    assert "call_recorded" in kinds

    again = await sweep(sessionmaker, root)
    assert again.linked == 0
    assert len(await audits(sessionmaker, "recording.linked")) == len(linked)


async def test_file_of_a_call_still_on_the_line_waits_until_the_call_ends(
    sessionmaker: Sessionmaker, root: Path
) -> None:
    call = await add_call(sessionmaker, ended=False)
    write_recording(root, call.uniqueid, answered_at=datetime.now(UTC) - timedelta(seconds=20))
    assert (await sweep(sessionmaker, root)).unfinished == 1
    async with sessionmaker() as session:
        row = await session.get(Call, call.id)
        assert row is not None
        row.state, row.ended_at = "ended", datetime.now(UTC)
        await session.commit()
    assert (await sweep(sessionmaker, root)).linked == 1


async def test_recording_of_a_call_siaga112_had_not_seen_is_linked_once_the_call_row_exists(
    sessionmaker: Sessionmaker, root: Path
) -> None:
    # Asterisk recorded while siaga112 was down: the file is there before the call row,
    # which reconciliation from the CDR file makes later.
    uid = new_uniqueid()
    write_recording(root, uid, answered_at=datetime.now(UTC) - timedelta(hours=20))
    assert (await sweep(sessionmaker, root)).waiting_for_call == 1
    call = await add_call(sessionmaker, uniqueid=uid)
    assert (await sweep(sessionmaker, root)).linked == 1
    assert (await recording_of(sessionmaker, call)).uniqueid == uid


async def linked_call(sessionmaker: Sessionmaker, root: Path) -> tuple[Call, bytes]:
    call = await add_call(sessionmaker)
    _, data = write_recording(
        root, call.uniqueid, answered_at=datetime.now(UTC) - timedelta(seconds=40)
    )
    assert (await sweep(sessionmaker, root)).linked == 1
    return call, data


async def test_supervisors_and_admins_download_the_audio_and_every_download_is_audited(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessionmaker, root: Path
) -> None:
    call, data = await linked_call(sessionmaker, root)
    for role in (Role.SUPERVISOR, Role.ADMIN):
        r = await api.get(f"/v1/calls/{call.id}/recording", headers=auth(keys[role]))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/wav"
        assert r.headers["cache-control"] == "no-store"
        assert "attachment" in r.headers["content-disposition"]
        assert r.content == data
        assert r.content[:4] == b"RIFF"
        assert r.content[8:12] == b"WAVE"
    downloads = await audits(sessionmaker, "recording.downloaded")
    assert [a.actor for a in downloads] == ["key:test-supervisor", "key:test-admin"]
    assert all(a.after and a.after["call_id"] == str(call.id) for a in downloads)
    assert all(a.request_id for a in downloads)


async def test_operators_integrators_and_agencies_may_not_listen(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessionmaker, root: Path
) -> None:
    call, _ = await linked_call(sessionmaker, root)
    row = await recording_of(sessionmaker, call)
    for role in (Role.OPERATOR, Role.INTEGRATOR):
        for url in (f"/v1/calls/{call.id}/recording", f"/v1/recordings/{row.id}/audio"):
            r = await api.get(url, headers=auth(keys[role]))
            assert r.status_code == 403, (role, url)
            assert r.json()["code"] == "forbidden"
    assert (await api.get(f"/v1/calls/{call.id}/recording")).status_code == 401
    assert await audits(sessionmaker, "recording.downloaded") == []


async def test_no_recording_unknown_call_and_missing_file_are_404_and_not_audited(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessionmaker, root: Path
) -> None:
    supervisor = auth(keys[Role.SUPERVISOR])
    unrecorded = await add_call(sessionmaker)
    r = await api.get(f"/v1/calls/{unrecorded.id}/recording", headers=supervisor)
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = await api.get(f"/v1/calls/{uuid.uuid4()}/recording", headers=supervisor)
    assert r.status_code == 404
    assert (await api.get("/v1/recordings/999999999/audio", headers=supervisor)).status_code == 404

    call, _ = await linked_call(sessionmaker, root)
    row = await recording_of(sessionmaker, call)
    (root / row.path).unlink()
    r = await api.get(f"/v1/calls/{call.id}/recording", headers=supervisor)
    assert r.status_code == 404
    assert "missing" in r.json()["message"]
    assert await audits(sessionmaker, "recording.downloaded") == []


async def test_call_detail_lists_recording_metadata_for_readers(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessionmaker, root: Path
) -> None:
    call, data = await linked_call(sessionmaker, root)
    r = await api.get(f"/v1/calls/{call.id}", headers=auth(keys[Role.OPERATOR]))
    assert r.status_code == 200, r.text
    [rec] = r.json()["recordings"]
    assert rec["call_id"] == str(call.id)
    assert rec["size_bytes"] == len(data)
    assert rec["download_url"] == f"/v1/recordings/{rec['id']}/audio"
    assert "path" not in rec
    listed = await api.get(f"/v1/calls/{call.id}/recordings", headers=auth(keys[Role.INTEGRATOR]))
    assert [x["id"] for x in listed.json()] == [rec["id"]]
    one = await api.get(f"/v1/recordings/{rec['id']}", headers=auth(keys[Role.OPERATOR]))
    assert one.json()["sha256"] == rec["sha256"]
    audio = await api.get(rec["download_url"], headers=auth(keys[Role.SUPERVISOR]))
    assert audio.content == data


async def test_legal_hold_needs_a_reason_and_a_supervisor_and_is_audited(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessionmaker, root: Path
) -> None:
    call, _ = await linked_call(sessionmaker, root)
    row = await recording_of(sessionmaker, call)
    url = f"/v1/recordings/{row.id}/legal-hold"
    r = await api.put(url, json={"hold": True, "reason": "LP/123/XII/2026 Polres Bekasi"},
                      headers=auth(keys[Role.OPERATOR]))  # fmt: skip
    assert r.status_code == 403
    r = await api.put(url, json={"hold": True}, headers=auth(keys[Role.SUPERVISOR]))
    assert (r.status_code, r.json()["code"]) == (422, "validation_error")
    r = await api.put(url, json={"hold": True, "reason": "LP/123/XII/2026 Polres Bekasi"},
                      headers=auth(keys[Role.SUPERVISOR]))  # fmt: skip
    assert r.status_code == 200, r.text
    assert (r.json()["legal_hold"], r.json()["legal_hold_reason"]) == (
        True,
        "LP/123/XII/2026 Polres Bekasi",
    )
    [held] = await audits(sessionmaker, "recording.legal_hold")
    assert (held.actor, held.before, held.after) == (
        "key:test-supervisor",
        {"legal_hold": False, "reason": None},
        {"legal_hold": True, "reason": "LP/123/XII/2026 Polres Bekasi"},
    )
    async with sessionmaker() as session:
        kinds = list(
            await session.scalars(
                select(IncidentEvent.kind).where(IncidentEvent.incident_id == call.incident_id)
            )
        )
    assert "recording_legal_hold" in kinds


async def test_retention_purge_deletes_expired_keeps_held_and_recent_and_cleans_orphans(
    api: httpx.AsyncClient, keys: dict[Role, str], sessionmaker: Sessionmaker, root: Path
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=100)
    expired = await add_call(sessionmaker, at=old)
    held = await add_call(sessionmaker, at=old)
    recent = await add_call(sessionmaker, at=now - timedelta(days=89))
    paths = {
        c.id: write_recording(root, c.uniqueid, answered_at=c.answered_at or old)[0]
        for c in (expired, held, recent)
    }
    assert (await sweep(sessionmaker, root, days=120)).linked == 3
    held_row = await recording_of(sessionmaker, held)
    r = await api.put(
        f"/v1/recordings/{held_row.id}/legal-hold",
        json={"hold": True, "reason": "court order 12/Pid/2026"},
        headers=auth(keys[Role.SUPERVISOR]),
    )
    assert r.status_code == 200
    orphan, _ = write_recording(root, new_uniqueid(), answered_at=old - timedelta(days=3))
    foreign = root / f"{old:%Y/%m/%d}" / "made-by-someone-else.wav"
    foreign.write_bytes(b"keep")

    result = await purge_expired(sessionmaker=sessionmaker, root=root, retention_days=90, now=now)
    assert (result.purged, result.orphans) == (1, 1)

    expired_row = await recording_of(sessionmaker, expired)
    assert (expired_row.status, expired_row.purged_at is not None) == ("purged", True)
    assert not (root / paths[expired.id]).exists()
    assert (root / paths[held.id]).exists()
    assert (root / paths[recent.id]).exists()
    assert (await recording_of(sessionmaker, recent)).status == "available"
    assert not (root / orphan).exists()
    assert not (root / orphan).parent.exists(), "the emptied date directory is removed"
    assert foreign.exists(), "files that are not siaga112 recordings are left alone"

    [purged] = await audits(sessionmaker, "recording.purged")
    assert (purged.actor, purged.entity_id) == ("system:recordings", str(expired_row.id))
    assert purged.before is not None
    assert purged.before["path"] == paths[expired.id]
    [orphaned] = await audits(sessionmaker, "recording.orphan_purged")
    assert orphaned.actor == "system:recordings"

    supervisor = auth(keys[Role.SUPERVISOR])
    r = await api.get(f"/v1/calls/{expired.id}/recording", headers=supervisor)
    assert r.status_code == 404
    assert "retention" in r.json()["message"]
    detail = (await api.get(f"/v1/calls/{expired.id}", headers=supervisor)).json()
    assert detail["recordings"][0]["status"] == "purged"
    assert detail["recordings"][0]["download_url"] is None
    r = await api.put(
        f"/v1/recordings/{expired_row.id}/legal-hold",
        json={"hold": True, "reason": "too late"},
        headers=supervisor,
    )
    assert (r.status_code, r.json()["code"]) == (409, "invalid_transition")
    assert (await api.get(f"/v1/calls/{held.id}/recording", headers=supervisor)).status_code == 200

    again = await purge_expired(sessionmaker=sessionmaker, root=root, retention_days=90, now=now)
    assert (again.purged, again.orphans) == (0, 0)


async def test_worker_links_what_was_recorded_during_a_long_downtime_then_sweeps_recent_days(
    sessionmaker: Sessionmaker, root: Path
) -> None:
    # Recorded 20 days ago while siaga112 was down: beyond the periodic sweep's two days, but
    # within retention, so the worker's first sweep finds it.
    call = await add_call(sessionmaker, at=datetime.now(UTC) - timedelta(days=20))
    write_recording(root, call.uniqueid, answered_at=call.answered_at or datetime.now(UTC))
    metrics = Metrics()
    worker = RecordingWorker(
        sessionmaker=sessionmaker,
        settings=RecordingSettings(sweep_s=0.05, sweep_days=2, retention_days=90),
        root=root,
        metrics=metrics,
    )
    await worker.start()
    try:
        for _ in range(100):
            if metrics.counters["recordings_linked"]:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    assert metrics.counters["recordings_linked"] == 1
    assert (await recording_of(sessionmaker, call)).status == "available"
    assert metrics.counters["recording_sweep_failures"] == 0
