"""The telephony side of `siaga112 serve`: FastAGI server, AMI link, call tracker and CDR
reconciliation, wired to the database. Built by the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.calls.recorder import (
    CallFacts,
    CallProgress,
    RecordedCall,
    apply_progress,
    record_incoming,
)
from siaga112.config import Settings
from siaga112.locations.aml_service import AmlPolicy, attach_pending_aml, rematch_unmatched
from siaga112.locations.georef import fetch_location_reference, fetchable_reference
from siaga112.locations.service import (
    backfill_call_locations,
    locations_for_call,
    referenced_location_for_call,
)
from siaga112.operators.service import QueueTarget, reapply_sessions
from siaga112.telephony.agi_server import AgiServer
from siaga112.telephony.ami_client import AmiLink
from siaga112.telephony.ami_events import AmiEvent, FullyBooted
from siaga112.telephony.call_control import AmiCallControl
from siaga112.telephony.callback_tracking import CallbackTracker
from siaga112.telephony.metrics import Metrics
from siaga112.telephony.pbx import LOW_QUEUE_SUFFIX, cdr_csv_path
from siaga112.telephony.reconcile import CdrReconciler
from siaga112.telephony.tracking import CallTracker

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 30.0
# Location derivation runs after the AGI write, beside calls: a few at a time so a surge does
# not take the database pool from the call path; beyond the backlog limit a call is left to the
# sweep that follows every reconciliation pass.
LOCATION_WORKERS = 4
LOCATION_BACKLOG = 2000
LOCATION_SWEEP_WINDOW = timedelta(hours=24)


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
        self._agi_sessions = _autocommit(sessionmaker)
        self.metrics = metrics
        self.agi = AgiServer(
            host=settings.agi.host,
            port=settings.agi.port,
            budget_s=settings.agi.budget_ms / 1000,
            record_call=self._record_call,
            metrics=metrics,
            low_queue=settings.pbx.queue_name + LOW_QUEUE_SUFFIX,
            repeat_priority=settings.agi.repeat_priority,
        )
        self.tracker = CallTracker(
            write_progress=self._write_progress, create_call=self._create_call, metrics=metrics
        )
        self.callbacks = CallbackTracker(sessionmaker=sessionmaker, metrics=metrics)
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
            on_event=self._on_event,
            on_login=self.resync,
            metrics=metrics,
            min_delay=settings.ami.reconnect_min_s,
            max_delay=settings.ami.reconnect_max_s,
        )
        self.control = AmiCallControl(
            send_action=self.ami.send_action, send_list=self.ami.send_list
        )
        self._periodic: asyncio.Task[None] | None = None
        self._location_tasks: set[asyncio.Task[None]] = set()
        self._location_slots = asyncio.Semaphore(LOCATION_WORKERS)
        self._reapplying: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.tracker.start()
        await self.callbacks.start()
        await self.callbacks.sweep()
        # What Asterisk recorded while siaga112 was down, before new calls come in.
        try:
            await self.reconciler.run_once()
        except Exception:
            self.metrics.inc("reconcile_failures")
            log.exception("reconciliation at start failed; will retry")
        await self._sweep_locations()
        await self.agi.start()
        await self.ami.start()
        self._periodic = asyncio.get_running_loop().create_task(self._reconcile_forever())

    def _on_event(self, event: AmiEvent) -> None:
        self.tracker.feed(event)
        self.callbacks.feed(event)
        if isinstance(event, FullyBooted):
            # Sent on every AMI login and when Asterisk has (re)started with empty dynamic
            # queues: put logged-in operators back (idempotent).
            task = asyncio.get_running_loop().create_task(self._reapply_sessions())
            self._reapplying.add(task)
            task.add_done_callback(self._reapplying.discard)

    async def _reapply_sessions(self) -> None:
        target = QueueTarget(
            queue=self.settings.pbx.queue_name,
            static_extensions=frozenset(self.settings.pbx.demo_operators),
        )
        try:
            async with self.sessionmaker() as session:
                count = await reapply_sessions(session=session, control=self.control, target=target)
            if count:
                log.info("re-applied %d operator queue sessions", count)
            self.metrics.inc("operator_sessions_reapplied", count)
        except Exception:
            self.metrics.inc("operator_reapply_failures")
            log.exception("re-applying operator queue sessions failed")

    async def stop(self) -> None:
        for task in list(self._reapplying):
            task.cancel()
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        await self.ami.stop()
        await self.agi.stop()
        await self.tracker.stop()
        await self.callbacks.stop()
        if self._location_tasks:
            # Short tasks: let them finish; the sweep at next start covers any cut off.
            _, late = await asyncio.wait(self._location_tasks, timeout=5.0)
            for task in late:
                task.cancel()

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
        await self._sweep_locations()

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            try:
                await self.reconciler.run_once()
            except Exception:
                self.metrics.inc("reconcile_failures")
                log.exception("periodic reconciliation failed")
            await self._sweep_locations()
            await self.callbacks.sweep()

    async def readiness_ami(self) -> tuple[bool, str]:
        return (True, "logged in") if self.ami.ready else (False, "not connected")

    async def readiness_agi(self) -> tuple[bool, str]:
        return (True, "listening") if self.agi.serving else (False, "not listening")

    # -- database side ---------------------------------------------------------------------
    async def _record_call(self, facts: CallFacts, at: datetime) -> RecordedCall:
        # One self-contained statement: no BEGIN/COMMIT round trips on the AGI path.
        async with self._agi_sessions() as session:
            recorded = await record_incoming(
                session=session,
                facts=facts,
                at=at,
                repeat_window_min=self.settings.agi.repeat_window_min,
            )
            await session.commit()
        self._schedule_locations(recorded, facts, at)
        return recorded

    # -- caller location, off the AGI hot path -------------------------------------------------
    def _schedule_locations(self, recorded: RecordedCall, facts: CallFacts, at: datetime) -> None:
        fetch = self.settings.locations.fetch_geolocation_by_reference and facts.geolocation
        if not (facts.pani or facts.geoloc_effective or fetch or _aml_number(facts)):
            return
        if len(self._location_tasks) >= LOCATION_BACKLOG:
            self.metrics.inc("location_tasks_deferred")
            return
        task = asyncio.get_running_loop().create_task(self._derive_locations(recorded, facts, at))
        self._location_tasks.add(task)
        task.add_done_callback(self._location_done)

    def _location_done(self, task: asyncio.Task[None]) -> None:
        self._location_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.metrics.inc("location_failures")
            log.error("deriving a call's location failed: %s", exc, exc_info=exc)
        else:
            self.metrics.inc("location_tasks_done")

    async def _derive_locations(
        self, recorded: RecordedCall, facts: CallFacts, at: datetime
    ) -> None:
        await self._derive_signalled_locations(recorded, facts, at)
        conf = self.settings.locations
        reference = fetchable_reference(facts.geolocation)
        if conf.fetch_geolocation_by_reference and reference is not None:
            await self._fetch_referenced_location(recorded, reference.uri, at)

    async def _fetch_referenced_location(
        self, recorded: RecordedCall, uri: str, at: datetime
    ) -> None:
        """A by-reference Geolocation, dereferenced when configured: after the call's own
        locations are stored, and without holding a database connection during the GET."""
        conf = self.settings.locations
        fetched = await fetch_location_reference(
            uri,
            allowed_hosts=conf.geolocation_reference_hosts,
            timeout_s=conf.geolocation_fetch_timeout_s,
        )
        if not fetched.ok:
            self.metrics.inc("location_reference_failures")
            log.warning(
                "location reference of call %s not used: %s", recorded.call_id, fetched.error
            )
            return
        async with self._location_slots, self.sessionmaker() as session:
            await referenced_location_for_call(
                session=session,
                call_id=recorded.call_id,
                incident_id=recorded.incident_id,
                fetched=fetched,
                observed_at=at,
            )
            await session.commit()
        self.metrics.inc("location_references_fetched")

    async def _derive_signalled_locations(
        self, recorded: RecordedCall, facts: CallFacts, at: datetime
    ) -> None:
        conf = self.settings.locations
        async with self._location_slots:
            started = time.perf_counter()
            async with self.sessionmaker() as session:
                await locations_for_call(
                    session=session,
                    call_id=recorded.call_id,
                    incident_id=recorded.incident_id,
                    pani=facts.pani,
                    geoloc_effective=facts.geoloc_effective,
                    geoloc_method=facts.geoloc_method,
                    observed_at=at,
                    gnb_id_bits=conf.gnb_id_bits,
                    min_radius_m=conf.cell_min_radius_m,
                )
                # An AML message that came before the call was recorded waits for it.
                number = _aml_number(facts)
                if number is not None:
                    policy = AmlPolicy.from_settings(conf)
                    await attach_pending_aml(
                        session=session,
                        call_id=recorded.call_id,
                        incident_id=recorded.incident_id,
                        number=number,
                        offered_at=at,
                        match_before=policy.match_before,
                        match_after_end=policy.match_after_end,
                    )
                await session.commit()
            self.metrics.observe("location_derivation", time.perf_counter() - started)

    async def _sweep_locations(self) -> None:
        """Cell locations for calls that have a PANI but none yet (reconciled, AMI-first,
        deferred or failed ones)."""
        conf = self.settings.locations
        try:
            async with self.sessionmaker() as session:
                done = await backfill_call_locations(
                    session=session,
                    since=datetime.now(UTC) - LOCATION_SWEEP_WINDOW,
                    gnb_id_bits=conf.gnb_id_bits,
                    min_radius_m=conf.cell_min_radius_m,
                )
                policy = AmlPolicy.from_settings(conf)
                done += await rematch_unmatched(
                    session=session,
                    policy=policy,
                    since=datetime.now(UTC) - policy.match_after_end,
                )
                await session.commit()
        except Exception:
            self.metrics.inc("location_failures")
            log.exception("location sweep failed; will retry")
            return
        if done:
            self.metrics.inc("locations_swept", done)

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


def _aml_number(facts: CallFacts) -> str | None:
    if facts.asserted_number or facts.caller_e164:
        return facts.asserted_number or facts.caller_e164
    return facts.caller_number if facts.caller_id_available else None


def _autocommit(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """The same sessions without transaction round trips, where the bind is an engine (a
    connection already in a transaction, as in tests, is used as it is)."""
    bind = sessionmaker.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        return sessionmaker
    return async_sessionmaker(
        bind.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
    )
