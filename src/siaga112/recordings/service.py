"""Linking recording files to calls, downloads, legal hold and the retention purge.

Files are learned of from the disk, not from AMI: Asterisk's MixMonitorStart/Stop events carry
no file name, and a sweep of the recordings directory finds a file whether siaga112 was up when
it was written or not (its name holds the caller channel's Uniqueid, the calls' key). A file is
linked once it is finished (``files.ready_to_link``); linking is idempotent (unique path), so
several processes may sweep at once.

Order of work: database rows first, files after. The purge marks rows purged and commits, then
deletes the files; a crash in between leaves a file whose row says purged, which the next purge
deletes as an orphan.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.audit.service import record_audit
from siaga112.auth.service import Actor, system_actor
from siaga112.calls.models import Call
from siaga112.errors import InvalidTransition, NotFound
from siaga112.incidents.service import add_timeline_event
from siaga112.recordings.files import (
    FileFacts,
    day_dirs,
    hash_and_header,
    parse_recording_name,
    parse_wav_header,
    ready_to_link,
    resolve_inside,
    scan_day,
)
from siaga112.recordings.models import Recording

log = logging.getLogger(__name__)

SYSTEM = system_actor("recordings")
AVAILABLE = "available"
PURGED = "purged"
# Bounds one transaction of the sweep or the purge.
BATCH = 500


# ---------------------------------------------------------------------------------------------
# linking


@dataclass(frozen=True, slots=True)
class SweepResult:
    seen: int = 0
    linked: int = 0
    # Files whose call has no row yet (reconciliation from the CDR file will make it).
    waiting_for_call: int = 0
    # Files that may still be written.
    unfinished: int = 0


@dataclass(frozen=True, slots=True)
class _CallRef:
    id: uuid.UUID
    ended_at: datetime | None
    incident_id: int | None


@dataclass(frozen=True, slots=True)
class _Ready:
    facts: FileFacts
    call: _CallRef
    sha256: str
    size: int
    duration_s: float | None


def _scan(root: Path, today: date, days: int) -> list[FileFacts]:
    found: list[FileFacts] = []
    for day, _ in day_dirs(root, today=today, days=days):
        found.extend(scan_day(root, day))
    return found


def _chunks(items: Sequence[str], size: int = 5000) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _known_paths(session: AsyncSession, paths: Sequence[str]) -> set[str]:
    known: set[str] = set()
    for chunk in _chunks(paths):
        known.update(await session.scalars(select(Recording.path).where(Recording.path.in_(chunk))))
    return known


async def _calls_by_uniqueid(
    session: AsyncSession, uniqueids: Sequence[str]
) -> dict[str, _CallRef]:
    out: dict[str, _CallRef] = {}
    for chunk in _chunks(uniqueids):
        rows = await session.execute(
            select(Call.uniqueid, Call.id, Call.ended_at, Call.incident_id).where(
                Call.uniqueid.in_(chunk)
            )
        )
        for uid, call_id, ended_at, incident_id in rows:
            out[uid] = _CallRef(call_id, ended_at, incident_id)
    return out


def _read(root: Path, facts: FileFacts) -> tuple[str, int, float | None] | None:
    path = resolve_inside(root, facts.name.path)
    if path is None:
        return None
    try:
        sha256, header, size = hash_and_header(path)
    except (FileNotFoundError, IsADirectoryError):
        return None
    info = parse_wav_header(header, size)
    return sha256, size, (round(info.duration_s, 3) if info is not None else None)


async def sweep_recordings(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    root: Path,
    days: int,
    now: datetime,
    settle_s: float,
    stale_s: float,
) -> SweepResult:
    """Links the finished recordings of the last ``days`` arrival dates to their calls."""
    facts = await asyncio.to_thread(_scan, root, now.astimezone(UTC).date(), days)
    if not facts:
        return SweepResult()
    async with sessionmaker() as session:
        known = await _known_paths(session, [f.name.path for f in facts])
        new = [f for f in facts if f.name.path not in known]
        calls = await _calls_by_uniqueid(session, sorted({f.name.uniqueid for f in new}))
    waiting = unfinished = 0
    candidates: list[tuple[FileFacts, _CallRef]] = []
    for f in sorted(new, key=lambda f: f.modified_at):
        call = calls.get(f.name.uniqueid)
        if call is None:
            waiting += 1
        elif not ready_to_link(
            modified_at=f.modified_at,
            call_ended_at=call.ended_at,
            now=now,
            settle_s=settle_s,
            stale_s=stale_s,
        ):
            unfinished += 1
        else:
            candidates.append((f, call))
    linked = 0
    for start in range(0, len(candidates), BATCH):
        # Files are read (hashed) with no database connection held.
        ready: list[_Ready] = []
        for f, call in candidates[start : start + BATCH]:
            read = await asyncio.to_thread(_read, root, f)
            if read is not None:
                ready.append(_Ready(f, call, *read))
        async with sessionmaker() as session:
            linked += await _link(session, ready)
            await session.commit()
    return SweepResult(
        seen=len(facts), linked=linked, waiting_for_call=waiting, unfinished=unfinished
    )


async def _link(session: AsyncSession, ready: Sequence[_Ready]) -> int:
    linked = 0
    for item in ready:
        name = item.facts.name
        values: dict[str, Any] = {
            "call_id": item.call.id,
            "uniqueid": name.uniqueid,
            "path": name.path,
            "format": name.format,
            "started_at": name.answered_at,
            "ended_at": max(item.facts.modified_at, name.answered_at),
            "size_bytes": item.size,
            "duration_s": item.duration_s,
            "sha256": item.sha256,
            "status": AVAILABLE,
        }
        recording_id = await session.scalar(
            insert(Recording)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Recording.path])
            .returning(Recording.id)
        )
        if recording_id is None:
            continue  # another process linked it first
        linked += 1
        data = {
            "recording_id": recording_id,
            "call_id": str(item.call.id),
            "format": name.format,
            "started_at": name.answered_at.isoformat(),
            "duration_s": item.duration_s,
            "size_bytes": item.size,
            "sha256": item.sha256,
        }
        await record_audit(
            session=session,
            actor=SYSTEM,
            action="recording.linked",
            entity_type="recording",
            entity_id=str(recording_id),
            before=None,
            after=data,
        )
        if item.call.incident_id is not None:
            add_timeline_event(
                session,
                incident_id=item.call.incident_id,
                actor=SYSTEM,
                kind="call_recorded",
                data=data,
            )
    return linked


# ---------------------------------------------------------------------------------------------
# reading


async def list_for_call(*, session: AsyncSession, call_id: uuid.UUID) -> list[Recording]:
    if await session.get(Call, call_id) is None:
        raise NotFound(f"call {call_id} not found")
    rows = await session.scalars(
        select(Recording)
        .where(Recording.call_id == call_id)
        .order_by(Recording.started_at, Recording.id)
    )
    return list(rows)


async def get_recording(*, session: AsyncSession, recording_id: int) -> Recording:
    recording = await session.get(Recording, recording_id)
    if recording is None:
        raise NotFound(f"recording {recording_id} not found")
    return recording


async def recording_of_call(*, session: AsyncSession, call_id: uuid.UUID) -> Recording:
    """The call's first available recording (the first operator's answer)."""
    rows = await list_for_call(session=session, call_id=call_id)
    if not rows:
        raise NotFound(f"call {call_id} has no recording")
    for row in rows:
        if row.status == AVAILABLE:
            return row
    raise NotFound(f"the recording of call {call_id} was deleted after the retention period")


async def open_for_download(
    *,
    session: AsyncSession,
    recording: Recording,
    root: Path,
    actor: Actor,
    request_id: str | None,
) -> Path:
    """The file to stream; the download is audited (the caller commits before streaming)."""
    if recording.status != AVAILABLE:
        raise NotFound(f"recording {recording.id} was deleted after the retention period")
    path = resolve_inside(root, recording.path)
    if path is None or not await asyncio.to_thread(path.is_file):
        log.warning("recording %s: file %s is missing", recording.id, recording.path)
        raise NotFound(f"the file of recording {recording.id} is missing")
    await record_audit(
        session=session,
        actor=actor,
        action="recording.downloaded",
        entity_type="recording",
        entity_id=str(recording.id),
        before=None,
        after={
            "recording_id": recording.id,
            "call_id": str(recording.call_id) if recording.call_id else None,
            "uniqueid": recording.uniqueid,
            "sha256": recording.sha256,
            "size_bytes": recording.size_bytes,
        },
        request_id=request_id,
    )
    return path


async def _incident_of(session: AsyncSession, call_id: uuid.UUID | None) -> int | None:
    if call_id is None:
        return None
    return await session.scalar(select(Call.incident_id).where(Call.id == call_id))


async def set_legal_hold(
    *,
    session: AsyncSession,
    recording_id: int,
    hold: bool,
    reason: str | None,
    actor: Actor,
    request_id: str | None,
) -> Recording:
    """Keeps a recording past the retention period (an investigation, a court order), or
    lifts that; a purged recording cannot be held any more."""
    recording = await session.get(Recording, recording_id, with_for_update=True)
    if recording is None:
        raise NotFound(f"recording {recording_id} not found")
    if recording.status == PURGED:
        raise InvalidTransition(f"recording {recording_id} was already deleted (retention)")
    before = {"legal_hold": recording.legal_hold, "reason": recording.legal_hold_reason}
    recording.legal_hold = hold
    recording.legal_hold_reason = reason if hold else None
    recording.legal_hold_by = actor.label if hold else None
    recording.legal_hold_at = datetime.now(UTC) if hold else None
    after = {"legal_hold": hold, "reason": recording.legal_hold_reason}
    data = {"recording_id": recording.id, "call_id": str(recording.call_id), **after}
    await record_audit(
        session=session,
        actor=actor,
        action="recording.legal_hold" if hold else "recording.legal_hold_lifted",
        entity_type="recording",
        entity_id=str(recording.id),
        before=before,
        after=after,
        request_id=request_id,
    )
    incident_id = await _incident_of(session, recording.call_id)
    if incident_id is not None:
        add_timeline_event(
            session, incident_id=incident_id, actor=actor, kind="recording_legal_hold", data=data
        )
    await session.flush()
    return recording


# ---------------------------------------------------------------------------------------------
# retention


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purged: int = 0
    orphans: int = 0


def _unlink(root: Path, relative: str) -> bool:
    path = resolve_inside(root, relative)
    if path is None:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


async def purge_expired(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    root: Path,
    retention_days: int,
    now: datetime,
) -> PurgeResult:
    """Deletes recordings older than the retention period, except those on legal hold: rows
    are marked purged (audited as the system, on the incident's timeline) and committed, then
    their files deleted; then files in expired date directories that no row keeps."""
    cutoff = now - timedelta(days=retention_days)
    purged = 0
    while True:
        async with sessionmaker() as session:
            rows = list(
                await session.scalars(
                    select(Recording)
                    .where(
                        Recording.status != PURGED,
                        Recording.legal_hold.is_(False),
                        Recording.started_at < cutoff,
                    )
                    .order_by(Recording.started_at)
                    .limit(BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                break
            incidents = await _incidents_of(session, [r.call_id for r in rows if r.call_id])
            for row in rows:
                before = {"status": row.status, "path": row.path, "sha256": row.sha256}
                row.status = PURGED
                row.purged_at = now
                after = {"status": PURGED, "retention_days": retention_days}
                await record_audit(
                    session=session,
                    actor=SYSTEM,
                    action="recording.purged",
                    entity_type="recording",
                    entity_id=str(row.id),
                    before=before,
                    after=after,
                )
                incident_id = incidents.get(row.call_id) if row.call_id else None
                if incident_id is not None:
                    add_timeline_event(
                        session,
                        incident_id=incident_id,
                        actor=SYSTEM,
                        kind="recording_purged",
                        data={"recording_id": row.id, "call_id": str(row.call_id), **after},
                    )
            paths = [r.path for r in rows]
            await session.commit()
        for path in paths:
            await asyncio.to_thread(_unlink, root, path)
        purged += len(paths)
        if len(paths) < BATCH:
            break
    orphans = await _purge_orphans(sessionmaker=sessionmaker, root=root, cutoff=cutoff)
    return PurgeResult(purged=purged, orphans=orphans)


async def _incidents_of(
    session: AsyncSession, call_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not call_ids:
        return {}
    rows = await session.execute(
        select(Call.id, Call.incident_id).where(
            Call.id.in_(call_ids), Call.incident_id.is_not(None)
        )
    )
    return {call_id: incident_id for call_id, incident_id in rows if incident_id is not None}


def _expired_files(root: Path, cutoff: datetime) -> list[str]:
    """Recording files in date directories wholly before the cutoff, not changed since."""
    found: list[str] = []
    last_day = cutoff.astimezone(UTC).date() - timedelta(days=1)
    for year in _numbered(root, 4):
        for month in _numbered(year, 2):
            for day_dir in _numbered(month, 2):
                try:
                    day = date(int(year.name), int(month.name), int(day_dir.name))
                except ValueError:
                    continue
                if day > last_day:
                    continue
                for entry in os.scandir(day_dir):
                    relative = f"{day:%Y/%m/%d}/{entry.name}"
                    if parse_recording_name(relative) is None:
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_file(follow_symlinks=False) and st.st_mtime < cutoff.timestamp():
                        found.append(relative)
    return found


def _numbered(directory: Path, width: int) -> list[Path]:
    try:
        return sorted(
            Path(e.path)
            for e in os.scandir(directory)
            if e.is_dir(follow_symlinks=False) and len(e.name) == width and e.name.isdigit()
        )
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_empty_dirs(root: Path, relatives: Iterable[str]) -> None:
    base = root.resolve()
    for parent in sorted({str(Path(r).parent) for r in relatives}, reverse=True):
        directory = base / parent
        while directory != base and directory.is_relative_to(base):
            try:
                directory.rmdir()
            except OSError:
                break  # not empty (or gone): its parents are not empty either
            directory = directory.parent


async def _purge_orphans(
    *, sessionmaker: async_sessionmaker[AsyncSession], root: Path, cutoff: datetime
) -> int:
    candidates = await asyncio.to_thread(_expired_files, root, cutoff)
    if not candidates:
        return 0
    deleted: list[str] = []
    for start in range(0, len(candidates), BATCH):
        chunk = candidates[start : start + BATCH]
        async with sessionmaker() as session:
            rows = await session.execute(
                select(Recording.path, Recording.status).where(Recording.path.in_(chunk))
            )
            status: dict[str, str] = {path: st for path, st in rows}
            # A row that is not purged keeps its file: on hold, or purged by the row pass.
            orphans = [p for p in chunk if status.get(p, PURGED) == PURGED]
            for relative in orphans:
                if relative in status:
                    continue  # purged row: audited when it was purged
                name = parse_recording_name(relative)
                await record_audit(
                    session=session,
                    actor=SYSTEM,
                    action="recording.orphan_purged",
                    entity_type="recording_file",
                    entity_id=name.uniqueid if name else relative[-64:],
                    before={"path": relative},
                    after={"status": PURGED},
                )
            await session.commit()
        for relative in orphans:
            if await asyncio.to_thread(_unlink, root, relative):
                deleted.append(relative)
    await asyncio.to_thread(_remove_empty_dirs, root, candidates)
    return len(deleted)
