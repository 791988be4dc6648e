"""The telephony side of `siaga112 serve`: FastAGI server, AMI link, call tracker and CDR
reconciliation, wired to the database. Built by the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
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
    CallLocationJob,
    aml_number,
    locations_for_call,
    mark_locations_done,
    pending_location_jobs,
    referenced_location_for_call,
)
from siaga112.operators.live import record_operator_states
from siaga112.operators.service import QueueTarget, reapply_sessions
from siaga112.telephony.agi_server import AgiServer
from siaga112.telephony.ami_client import AmiLink
from siaga112.telephony.ami_events import AmiEvent, FullyBooted, QueueMemberChanged
from siaga112.telephony.call_control import AmiCallControl, parse_queue_members
from siaga112.telephony.callback_tracking import CallbackTracker
from siaga112.telephony.metrics import Metrics
from siaga112.telephony.operator_states import OperatorStates, OperatorStateWriter, Pending
from siaga112.telephony.pbx import cdr_csv_path
from siaga112.telephony.reconcile import CdrReconciler
from siaga112.telephony.resync import (
    connected_caller_events,
    connected_callers,
    waiting_caller_event,
)
from siaga112.telephony.tracking import CallTracker

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 30.0
# Location derivation runs after the AGI write, beside calls: a few at a time so a surge does
# not take the database pool from the call path; beyond the backlog limit a call is left to the
# sweep that follows every reconciliation pass (the call row holds all it needs: PANI, the
# PIDF-LO location Asterisk resolved, the Geolocation header).
LOCATION_WORKERS = 4
LOCATION_BACKLOG = 2000
LOCATION_SWEEP_WINDOW = timedelta(hours=24)
# Calls younger than this are left to their own background task, not raced by the sweep.
LOCATION_SWEEP_GRACE = timedelta(seconds=60)
LOCATION_SWEEP_LIMIT = 200


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
            low_queue=settings.pbx.low_queue_name,
            repeat_priority=settings.agi.repeat_priority,
        )
        self.tracker = CallTracker(
            write_progress=self._write_progress, create_call=self._create_call, metrics=metrics
        )
        self.callbacks = CallbackTracker(sessionmaker=sessionmaker, metrics=metrics)
        self.operator_states = OperatorStates(queue=settings.pbx.queue_name)
        self.operator_writer = OperatorStateWriter(
            write=self._write_operator_states, metrics=metrics
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
        # Calls whose derivation is running in this process (the sweep skips them).
        self._locating: set[uuid.UUID] = set()
        self._sweep_lock = asyncio.Lock()
        self._sweeps: set[asyncio.Task[None]] = set()
        self._reapplying: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.tracker.start()
        await self.callbacks.start()
        await self.callbacks.sweep()
        await self.operator_writer.start()
        # What Asterisk recorded while siaga112 was down, before new calls come in.
        try:
            await self.reconciler.run_once()
        except Exception:
            self.metrics.inc("reconcile_failures")
            log.exception("reconciliation at start failed; will retry")
        # In the background: a sweep that fetches locations by reference must not hold up the
        # AGI server's start.
        self._kick_sweep()
        await self.agi.start()
        await self.ami.start()
        self._periodic = asyncio.get_running_loop().create_task(self._reconcile_forever())

    def _on_event(self, event: AmiEvent) -> None:
        if isinstance(event, QueueMemberChanged):
            change = self.operator_states.apply(event)
            if change is not None:
                self.operator_writer.push(change)
            return
        self.tracker.feed(event)
        self.callbacks.feed(event)
        if isinstance(event, FullyBooted):
            # Sent on every AMI login and when Asterisk has (re)started with empty dynamic
            # queues: put logged-in operators back (idempotent).
            task = asyncio.get_running_loop().create_task(self._reapply_sessions())
            self._reapplying.add(task)
            task.add_done_callback(self._reapplying.discard)

    async def _reapply_sessions(self) -> None:
        target = QueueTarget.for_settings(self.settings.pbx)
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
        sweeps = list(self._sweeps)
        for task in list(self._reapplying) + sweeps:
            task.cancel()
        # A sweep cut off leaves its calls unmarked: the next start's sweep does them.
        await asyncio.gather(*sweeps, return_exceptions=True)
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        await self.ami.stop()
        await self.agi.stop()
        await self.tracker.stop()
        await self.callbacks.stop()
        await self.operator_writer.stop()
        if self._location_tasks:
            # Short tasks: let them finish; the sweep at next start covers any cut off.
            _, late = await asyncio.wait(self._location_tasks, timeout=5.0)
            for task in late:
                task.cancel()

    async def resync(self) -> None:
        """After every AMI login: callers waiting in queues, callers talking to an operator and
        operators' states now (events missed while away are lost for good), then the CDR
        file."""
        now = datetime.now(UTC)
        entries = await self.ami.send_list({"Action": "QueueStatus"})
        self.operator_writer.push(
            self.operator_states.apply_snapshot(parse_queue_members(entries), at=now)
        )
        for entry in entries:
            message = waiting_caller_event(entry, now=now)
            if message is not None:
                self.tracker.feed_raw(message)
        channels = await self.ami.send_list({"Action": "CoreShowChannels"})
        for caller in connected_callers(channels, now=now):
            for message in connected_caller_events(caller, now=now):
                self.tracker.feed_raw(message)
            self.metrics.inc("ami_resync_connected_callers")
        self.metrics.inc("ami_resyncs")
        await self.reconciler.run_once()
        self._kick_sweep()

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
        job = CallLocationJob(
            call_id=recorded.call_id,
            incident_id=recorded.incident_id,
            pani=facts.pani,
            geoloc_effective=facts.geoloc_effective,
            geoloc_method=facts.geoloc_method,
            geolocation=facts.geolocation,
            aml_number=aml_number(
                asserted_number=facts.asserted_number,
                caller_e164=facts.caller_e164,
                caller_number=facts.caller_number,
                caller_id_available=facts.caller_id_available,
            ),
            at=at,
        )
        if not (job.locatable or job.aml_number):
            return
        if len(self._location_tasks) >= LOCATION_BACKLOG:
            # Not lost: the row keeps what the derivation needs, and the sweep does it.
            self.metrics.inc("location_tasks_deferred")
            return
        task = asyncio.get_running_loop().create_task(self._derive_tracked(job))
        self._location_tasks.add(task)
        task.add_done_callback(self._location_done)

    async def _derive_tracked(self, job: CallLocationJob) -> None:
        self._locating.add(job.call_id)
        try:
            await self._derive_locations(job)
        finally:
            self._locating.discard(job.call_id)

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

    async def _derive_locations(self, job: CallLocationJob) -> None:
        """Everything the call's signalling gives (cell, PIDF-LO by value, AML that came
        first, by-reference fetch when configured), then the call is marked done. A failure
        leaves it unmarked: the sweep tries again."""
        conf = self.settings.locations
        reference = (
            fetchable_reference(job.geolocation) if conf.fetch_geolocation_by_reference else None
        )
        await self._derive_signalled_locations(job, done=reference is None)
        if reference is not None:
            await self._fetch_referenced_location(job, reference.uri)

    async def _fetch_referenced_location(self, job: CallLocationJob, uri: str) -> None:
        """A by-reference Geolocation, dereferenced when configured: after the call's own
        locations are stored, and without holding a database connection during the GET. One
        try: a fetch that fails is counted and logged, and the call is done all the same."""
        conf = self.settings.locations
        fetched = await fetch_location_reference(
            uri,
            allowed_hosts=conf.geolocation_reference_hosts,
            timeout_s=conf.geolocation_fetch_timeout_s,
        )
        if not fetched.ok:
            self.metrics.inc("location_reference_failures")
            log.warning("location reference of call %s not used: %s", job.call_id, fetched.error)
        async with self._location_slots, self.sessionmaker() as session:
            if fetched.ok:
                await referenced_location_for_call(
                    session=session,
                    call_id=job.call_id,
                    incident_id=job.incident_id,
                    fetched=fetched,
                    observed_at=job.at,
                )
            await mark_locations_done(session=session, call_id=job.call_id)
            await session.commit()
        if fetched.ok:
            self.metrics.inc("location_references_fetched")

    async def _derive_signalled_locations(self, job: CallLocationJob, *, done: bool) -> None:
        conf = self.settings.locations
        async with self._location_slots:
            started = time.perf_counter()
            async with self.sessionmaker() as session:
                await locations_for_call(
                    session=session,
                    call_id=job.call_id,
                    incident_id=job.incident_id,
                    pani=job.pani,
                    geoloc_effective=job.geoloc_effective,
                    geoloc_method=job.geoloc_method,
                    observed_at=job.at,
                    gnb_id_bits=conf.gnb_id_bits,
                    min_radius_m=conf.cell_min_radius_m,
                )
                # An AML message that came before the call was recorded waits for it.
                if job.aml_number is not None:
                    policy = AmlPolicy.from_settings(conf)
                    await attach_pending_aml(
                        session=session,
                        call_id=job.call_id,
                        incident_id=job.incident_id,
                        number=job.aml_number,
                        offered_at=job.at,
                        match_before=policy.match_before,
                        match_after_end=policy.match_after_end,
                    )
                if done and job.locatable:
                    await mark_locations_done(session=session, call_id=job.call_id)
                await session.commit()
            self.metrics.observe("location_derivation", time.perf_counter() - started)

    def _kick_sweep(self) -> None:
        task = asyncio.get_running_loop().create_task(self._sweep_locations())
        self._sweeps.add(task)
        task.add_done_callback(self._sweep_done)

    def _sweep_done(self, task: asyncio.Task[None]) -> None:
        self._sweeps.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.metrics.inc("location_failures")
            log.error("location sweep failed", exc_info=task.exception())

    async def _sweep_locations(self) -> None:
        """Locations for calls whose derivation never finished (deferred, failed, cut off,
        AMI-first or reconciled), the same derivation as a live call's, a few at a time; and
        another try for unmatched AML. One sweep at a time per process (several processes are
        safe: each call's derivation is serialised and idempotent)."""
        if self._sweep_lock.locked():
            return
        async with self._sweep_lock:
            await self._sweep_once()

    async def _sweep_once(self) -> None:
        conf = self.settings.locations
        now = datetime.now(UTC)
        try:
            async with self.sessionmaker() as session:
                jobs = await pending_location_jobs(
                    session=session,
                    since=now - LOCATION_SWEEP_WINDOW,
                    before=now - LOCATION_SWEEP_GRACE,
                    limit=LOCATION_SWEEP_LIMIT,
                )
                policy = AmlPolicy.from_settings(conf)
                matched = await rematch_unmatched(
                    session=session, policy=policy, since=now - policy.match_after_end
                )
                await session.commit()
        except Exception:
            self.metrics.inc("location_failures")
            log.exception("location sweep failed; will retry")
            return
        jobs = [j for j in jobs if j.call_id not in self._locating]
        slots = asyncio.Semaphore(LOCATION_WORKERS)  # fetches included, not only the database

        async def one(job: CallLocationJob) -> None:
            async with slots:
                await self._derive_tracked(job)

        results = await asyncio.gather(*(one(j) for j in jobs), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for exc in failed:
            log.error("sweep: deriving a call's location failed: %s", exc, exc_info=exc)
        if failed:
            self.metrics.inc("location_failures", len(failed))
        done = len(jobs) - len(failed) + matched
        if done:
            self.metrics.inc("locations_swept", done)

    async def _create_call(self, facts: CallFacts, at: datetime) -> None:
        async with self.sessionmaker() as session:
            await record_incoming(
                session=session, facts=facts, at=at, actor="system:ami", source="ami"
            )
            await session.commit()

    async def _write_operator_states(self, items: list[Pending]) -> int:
        async with self.sessionmaker() as session:
            written = await record_operator_states(session=session, items=items)
            await session.commit()
            return written

    async def _write_progress(self, updates: list[CallProgress]) -> set[str]:
        async with self.sessionmaker() as session:
            missing = await apply_progress(session=session, updates=updates)
            await session.commit()
            return missing


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
