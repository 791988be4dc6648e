"""The telephony side of `siaga112 serve`: FastAGI server, AMI link, call tracker and CDR
reconciliation, wired to the database. Built by the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.calls.recorder import (
    CallFacts,
    CallProgress,
    RecordedCall,
    apply_progress,
    record_incoming,
)
from siaga112.config import Settings
from siaga112.telephony.agi_server import AgiServer
from siaga112.telephony.ami_client import AmiLink
from siaga112.telephony.metrics import Metrics
from siaga112.telephony.pbx import cdr_csv_path
from siaga112.telephony.reconcile import CdrReconciler
from siaga112.telephony.tracking import CallTracker

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 30.0


class Telephony:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.agi = AgiServer(
            host=settings.agi.host,
            port=settings.agi.port,
            budget_s=settings.agi.budget_ms / 1000,
            record_call=self._record_call,
            metrics=metrics,
        )
        self.tracker = CallTracker(
            write_progress=self._write_progress, create_call=self._create_call, metrics=metrics
        )
        self.reconciler = CdrReconciler(
            path=settings.pbx.cdr_path or cdr_csv_path(settings),
            sessionmaker=sessionmaker,
            metrics=metrics,
        )
        self.ami = AmiLink(
            host=settings.ami.host,
            port=settings.ami.port,
            username=settings.ami.username,
            secret=settings.ami_secret.get_secret_value(),
            on_event=self.tracker.feed,
            on_login=self.resync,
            metrics=metrics,
            min_delay=settings.ami.reconnect_min_s,
            max_delay=settings.ami.reconnect_max_s,
        )
        self._periodic: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.tracker.start()
        # What Asterisk recorded while siaga112 was down, before new calls come in.
        try:
            await self.reconciler.run_once()
        except Exception:
            self.metrics.inc("reconcile_failures")
            log.exception("reconciliation at start failed; will retry")
        await self.agi.start()
        await self.ami.start()
        self._periodic = asyncio.get_running_loop().create_task(self._reconcile_forever())

    async def stop(self) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        await self.ami.stop()
        await self.agi.stop()
        await self.tracker.stop()

    async def resync(self) -> None:
        """After every AMI login: callers waiting in queues now, then the CDR file."""
        entries = await self.ami.send_list({"Action": "QueueStatus"})
        now = datetime.now(UTC)
        for entry in entries:
            if entry.get("Event") != "QueueEntry" or not entry.get("Uniqueid"):
                continue
            try:
                wait = int(entry.get("Wait", "0"))
            except ValueError:
                wait = 0
            joined = now - timedelta(seconds=wait)
            self.tracker.feed_raw(
                {
                    "Event": "QueueCallerJoin",
                    "Queue": entry.get("Queue", ""),
                    "Position": entry.get("Position", ""),
                    "Channel": entry.get("Channel", ""),
                    "Uniqueid": entry["Uniqueid"],
                    "Linkedid": entry.get("Linkedid") or entry["Uniqueid"],
                    "CallerIDNum": entry.get("CallerIDNum", ""),
                    "CallerIDName": entry.get("CallerIDName", ""),
                    "Timestamp": f"{joined.timestamp():.6f}",
                }
            )
        self.metrics.inc("ami_resyncs")
        await self.reconciler.run_once()

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            try:
                await self.reconciler.run_once()
            except Exception:
                self.metrics.inc("reconcile_failures")
                log.exception("periodic reconciliation failed")

    async def readiness_ami(self) -> tuple[bool, str]:
        return (True, "logged in") if self.ami.ready else (False, "not connected")

    async def readiness_agi(self) -> tuple[bool, str]:
        return (True, "listening") if self.agi.serving else (False, "not listening")

    # -- database side ---------------------------------------------------------------------
    async def _record_call(self, facts: CallFacts, at: datetime) -> RecordedCall:
        async with self.sessionmaker() as session:
            recorded = await record_incoming(session=session, facts=facts, at=at)
            await session.commit()
            return recorded

    async def _create_call(self, facts: CallFacts, at: datetime) -> None:
        async with self.sessionmaker() as session:
            await record_incoming(
                session=session, facts=facts, at=at, actor="system:ami", source="ami"
            )
            await session.commit()

    async def _write_progress(self, updates: list[CallProgress]) -> set[str]:
        async with self.sessionmaker() as session:
            missing = await apply_progress(session=session, updates=updates)
            await session.commit()
            return missing
