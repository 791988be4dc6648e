"""Reconciliation: every call in Asterisk's own CDR file gets its row and incident, with caller
ID, network headers and timestamps, also the calls that arrived while siaga112 was down.

Reads only what was appended since the last run; the position is stored in the database in the
same transaction as the rows it produced, so a crash re-reads at most one chunk, and re-reading
changes nothing (idempotent writes).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.auth.service import system_actor
from siaga112.calls.cursors import ReadCursor, RecordStart
from siaga112.calls.lost import NODE_LOST
from siaga112.calls.models import Call
from siaga112.calls.recorder import CallProgress, apply_progress, record_incoming
from siaga112.locations.service import locations_for_call
from siaga112.metrics import Metrics
from siaga112.telephony.cdr import CdrRecord, read_new_records
from siaga112.telephony.facts import facts_from_env

log = logging.getLogger(__name__)

# One read, one transaction: about 10,000 CDR lines at most.
MAX_READ = 4 * 1024 * 1024
RECONCILE_ACTOR = system_actor("reconcile")


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode() if value else ""


def progress_from_cdr(record: CdrRecord) -> CallProgress:
    operator = record.answered_by
    if operator:
        state, outcome = "ended", "answered"
    elif record.queue:
        state, outcome = "abandoned", "abandoned"
    elif record.cut_before_the_centre:
        # A dropped emergency call: the caller may still need help, so it goes on the callback
        # worklist with everyone who gave up waiting.
        state, outcome = "abandoned", "cut_before_queue"
    else:
        state, outcome = "ended", "ended_before_answer"
    return CallProgress(
        uniqueid=record.uniqueid,
        state=state,
        enqueued_at=record.enqueued,
        ringing_at=None,
        answered_at=record.answered if operator else None,
        ended_at=record.end,
        queue=record.queue or None,
        operator=operator,
        hangup_cause=None,
        outcome=outcome,
    )


async def apply_record(
    session: AsyncSession, record: CdrRecord, *, node: str | None = None
) -> bool:
    """Writes one caller leg of ``node``'s CDR file; True when the call had no row before
    (siaga112 missed it)."""
    facts = facts_from_env(
        {
            "agi_uniqueid": record.uniqueid,
            "agi_linkedid": record.linkedid,
            "agi_channel": record.channel,
            "agi_callerid": record.src or "unknown",
            "agi_calleridname": record.caller_name or "unknown",
            "agi_arg_1": record.dialled_number,
            "agi_arg_2": _b64(record.pai),
            "agi_arg_3": _b64(record.pani),
            "agi_arg_4": _b64(record.geolocation),
            "agi_arg_5": record.presentation,
            "agi_arg_6": _b64(record.location),
            "agi_arg_8": node or "",
        }
    )
    at = record.start or record.end
    if at is None:
        return False
    recorded = await record_incoming(
        session=session, facts=facts, at=at, actor="system:reconcile", source="reconciled"
    )
    await apply_progress(
        session=session, updates=[progress_from_cdr(record)], actor="system:reconcile"
    )
    if facts.geoloc_effective:
        # The PIDF-LO location Asterisk resolved is only in the CDR (the call row keeps the
        # Geolocation header, not the location): store it now. Idempotent per call, so a call
        # the AGI step already located gets nothing twice. Cells are left to the sweep.
        await locations_for_call(
            session=session,
            call_id=recorded.call_id,
            incident_id=recorded.incident_id,
            pani=None,
            geoloc_effective=facts.geoloc_effective,
            geoloc_method=facts.geoloc_method,
            observed_at=at,
            actor=RECONCILE_ACTOR,
        )
    return recorded.call_created


class CdrReconciler:
    def __init__(
        self,
        *,
        path: Path,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        name: str = "asterisk-cdr",
        not_before: datetime | None = None,
        node: str | None = None,
    ) -> None:
        self.path = path
        # The node whose CDR file this is: its calls record it.
        self.node = node
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.name = name
        # Calls Asterisk recorded before this belong to no record of this database's (see
        # record_start_of): read past, never adopted.
        self.not_before = not_before
        self._lock = asyncio.Lock()

    async def run_once(self) -> int:
        """Applies what was appended since the last run; returns calls that had no row."""
        async with self._lock:
            created = 0
            while True:
                batch_created, more = await self._one_batch()
                created += batch_created
                if not more:
                    return created

    async def skip_to_end(self) -> None:
        """Starts reading at the current end of the file (a new database on an old PBX)."""
        try:
            st = await asyncio.to_thread(os.stat, self.path)
        except FileNotFoundError:
            return
        async with self.sessionmaker() as session:
            await self._save_position(session, f"{st.st_dev}:{st.st_ino}", st.st_size)
            await session.commit()

    async def _save_position(self, session: AsyncSession, file_id: str, position: int) -> None:
        await session.execute(
            insert(ReadCursor)
            .values(name=self.name, file_id=file_id, position=position)
            .on_conflict_do_update(
                index_elements=[ReadCursor.name], set_={"file_id": file_id, "position": position}
            )
        )

    async def _one_batch(self) -> tuple[int, bool]:
        try:
            st = await asyncio.to_thread(os.stat, self.path)
        except FileNotFoundError:
            return 0, False
        file_id = f"{st.st_dev}:{st.st_ino}"
        async with self.sessionmaker() as session:
            cursor = await session.get(ReadCursor, self.name, with_for_update=True)
            position = cursor.position if cursor and cursor.file_id == file_id else 0
            if position > st.st_size:  # truncated in place
                position = 0
            if position == st.st_size:
                return 0, False
            data = await asyncio.to_thread(_read, self.path, position, MAX_READ)
            records, consumed, rejected = read_new_records(data)
            if rejected:
                self.metrics.inc("cdr_lines_rejected", rejected)
                log.warning("%d CDR line(s) in %s did not parse", rejected, self.path)
            created = 0
            legs = [r for r in records if r.is_emergency_leg]
            if self.not_before is not None:
                floor = self.not_before
                kept = [r for r in legs if (r.start or r.end or floor) >= floor]
                if len(kept) < len(legs):
                    self.metrics.inc("cdr_records_before_record_start", len(legs) - len(kept))
                legs = kept
            complete = await _complete_calls(session, [r.uniqueid for r in legs])
            for record in legs:
                if record.uniqueid not in complete and await apply_record(
                    session, record, node=self.node
                ):
                    created += 1
            await self._save_position(session, file_id, position + consumed)
            await session.commit()
        if created:
            self.metrics.inc("calls_reconciled", created)
            log.warning("reconciled %d call(s) that siaga112 had not recorded", created)
        return created, consumed > 0 and position + consumed < st.st_size


async def record_start_of(session: AsyncSession) -> datetime | None:
    """When this database's record starts (written by its first migration)."""
    started: datetime | None = await session.scalar(select(RecordStart.started_at))
    return started


async def _complete_calls(session: AsyncSession, uniqueids: list[str]) -> set[str]:
    """Calls the AGI step recorded and the tracker saw to their end: nothing to add to them.
    Skipping them keeps a busy CDR file from costing two statements per call every run."""
    if not uniqueids:
        return set()
    rows = await session.scalars(
        select(Call.uniqueid).where(
            Call.uniqueid.in_(uniqueids),
            Call.source == "agi",
            Call.state.in_(("ended", "abandoned")),
            # Ended by siaga112 as lost with its node: the node's own record is the truth.
            Call.outcome.is_distinct_from(NODE_LOST),
            Call.incident_id.is_not(None),
        )
    )
    return set(rows)


def _read(path: Path, position: int, size: int) -> bytes:
    with path.open("rb") as fh:
        fh.seek(position)
        return fh.read(size)
