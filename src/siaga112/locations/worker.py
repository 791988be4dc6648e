"""Deriving callers' locations from what their calls' signalling carried: network cell,
PIDF-LO, AML that came first, a by-reference Geolocation when configured.

The AGI step only records the call (one statement); the call row keeps everything a
derivation needs, and ``locations_done_at`` says when it was done. So the derivation can run
anywhere that reaches the database:

- in its own process (``siaga112 worker``, started by ``siaga112 serve`` unless told not to):
  it looks for calls not yet done every ``worker_poll_s`` and derives them. This is the
  default: the derivation is many statements per call, and on the AGI step's event loop it
  held up the calls themselves under a surge (bench/surge: AGI p99 77 ms at 50 calls/s with
  it, 23 ms without);
- inline (``SIAGA112_LOCATIONS__DERIVE_IN=inline``): a background task per call in the
  process that answered the AGI request, and a sweep after every reconciliation pass.

Either way a derivation is idempotent and serialised per call (the call row is locked), so
several processes may sweep the same database. A sweep derives the calls whose only location is
their network cell (most calls) together, in a handful of statements for all of them
(``derive_cell_only_calls``); a call with a PIDF-LO, a reference to fetch or AML that may wait
for it goes through the per-call path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.config import Settings
from siaga112.locations.aml_service import (
    AmlPolicy,
    attach_pending_aml,
    may_have_pending_aml,
    numbers_with_unmatched_aml,
    rematch_unmatched,
)
from siaga112.locations.georef import fetch_location_reference, fetchable_reference
from siaga112.locations.service import (
    CallLocationJob,
    derive_cell_only_calls,
    locations_for_call,
    mark_locations_done,
    pending_location_jobs,
    referenced_location_for_call,
)
from siaga112.metrics import Metrics
from siaga112.net import outbound_policy

log = logging.getLogger(__name__)

# A few derivations at a time, so that they never take the whole database pool.
CONCURRENCY = 4
# Inline: beyond this many running derivations a call is left to the sweep (not lost: its row
# keeps what the derivation needs).
BACKLOG = 2000
SWEEP_WINDOW = timedelta(hours=24)
SWEEP_LIMIT = 200


class LocationWorker:
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
        # Built once: it looks up this machine's own addresses.
        self._outbound = outbound_policy(settings)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        # Calls whose derivation runs in this process now (a sweep skips them).
        self._locating: set[uuid.UUID] = set()
        self._sweep_lock = asyncio.Lock()
        # Calls whose derivation failed: how often, and not before when to try again.
        self._tries: dict[uuid.UUID, int] = {}
        self._retry_at: dict[uuid.UUID, float] = {}

    # -- inline: one task per call ---------------------------------------------------------
    def schedule(self, job: CallLocationJob) -> None:
        if not (job.locatable or job.aml_number):
            return
        if len(self._tasks) >= BACKLOG:
            self.metrics.inc("location_tasks_deferred")
            return
        task = asyncio.get_running_loop().create_task(self.derive(job))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    @property
    def tasks(self) -> frozenset[asyncio.Task[None]]:
        """The derivations running inline now."""
        return frozenset(self._tasks)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.metrics.inc("location_failures")
            log.error("deriving a call's location failed: %s", exc, exc_info=exc)
        else:
            self.metrics.inc("location_tasks_done")

    async def stop(self, *, within_s: float = 5.0) -> None:
        """Lets running derivations finish (they are short); the next sweep does any cut off."""
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=within_s)
            for task in late:
                task.cancel()

    # -- one call ----------------------------------------------------------------------------
    async def derive(self, job: CallLocationJob, *, aml: frozenset[str] | None = None) -> None:
        """Everything the call's signalling gives (cell, PIDF-LO by value, AML that came
        first, by-reference fetch when configured), then the call is marked done. A failure
        leaves it unmarked: the sweep tries again. ``aml``: the numbers with unmatched AML
        messages, when the caller (a sweep) has read them; None: look for every call."""
        self._locating.add(job.call_id)
        try:
            conf = self.settings.locations
            reference = (
                fetchable_reference(job.geolocation)
                if conf.fetch_geolocation_by_reference
                else None
            )
            await self._signalled(job, done=reference is None, aml=aml)
            if reference is not None:
                await self._referenced(job, reference.uri)
        finally:
            self._locating.discard(job.call_id)

    async def _signalled(
        self, job: CallLocationJob, *, done: bool, aml: frozenset[str] | None = None
    ) -> None:
        conf = self.settings.locations
        async with self._slots:
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
                # An AML message that came before the call was recorded waits for it. Most
                # callers' numbers have none: the sweep's one read spares them the advisory
                # lock and the query (bench/locderive).
                if job.aml_number is not None and may_have_pending_aml(job.aml_number, aml):
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

    async def _referenced(self, job: CallLocationJob, uri: str) -> None:
        """A by-reference Geolocation, dereferenced when configured: after the call's own
        locations are stored, and without holding a database connection during the GET. One
        try: a fetch that fails is counted and logged, and the call is done all the same."""
        conf = self.settings.locations
        fetched = await fetch_location_reference(
            uri,
            allowed_hosts=conf.geolocation_reference_hosts,
            outbound=self._outbound,
            timeout_s=conf.geolocation_fetch_timeout_s,
        )
        if not fetched.ok:
            self.metrics.inc("location_reference_failures")
            log.warning("location reference of call %s not used: %s", job.call_id, fetched.error)
        async with self._slots, self.sessionmaker() as session:
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

    # -- calls not yet done ------------------------------------------------------------------
    async def sweep(self, *, grace: timedelta) -> int:
        """Derives the calls offered more than ``grace`` ago (younger ones are left to their
        own inline task) whose derivation never finished, a few at a time, and tries
        unmatched AML messages again. One sweep at a time per process. Returns how many calls
        and messages it did."""
        if self._sweep_lock.locked():
            return 0
        async with self._sweep_lock:
            return await self._sweep_once(grace)

    async def _sweep_once(self, grace: timedelta) -> int:
        conf = self.settings.locations
        now = datetime.now(UTC)
        try:
            async with self.sessionmaker() as session:
                jobs = await pending_location_jobs(
                    session=session,
                    since=now - SWEEP_WINDOW,
                    before=now - grace,
                    limit=SWEEP_LIMIT,
                )
                policy = AmlPolicy.from_settings(conf)
                matched = await rematch_unmatched(
                    session=session, policy=policy, since=now - policy.match_after_end
                )
                # After the rematch: what it matched is no longer unmatched. The window is the
                # oldest job's offer less how long before a call its AML may come.
                aml: frozenset[str] | None = None
                if any(j.aml_number for j in jobs):
                    oldest = min(j.at for j in jobs)
                    aml = await numbers_with_unmatched_aml(
                        session=session, since=oldest - policy.match_before
                    )
                await session.commit()
        except Exception:
            self.metrics.inc("location_failures")
            log.exception("location sweep failed; will retry")
            return 0
        clock = time.monotonic()
        if len(self._tries) > 10_000:  # calls that kept failing until they left the window
            self._tries.clear()
            self._retry_at.clear()
        jobs = [
            j
            for j in jobs
            if j.call_id not in self._locating and self._retry_at.get(j.call_id, 0.0) <= clock
        ]
        cell_only = [j for j in jobs if self.cell_only(j, aml)]
        batched = 0
        if cell_only:
            cell_only_ids = {j.call_id for j in cell_only}
            jobs = [j for j in jobs if j.call_id not in cell_only_ids]
            # A failed batch leaves its calls to the per-call path, where one bad call fails
            # alone and backs off alone.
            left = await self._derive_cell_only(cell_only)
            batched = len(cell_only) - len(left)
            for call_id in cell_only_ids - {j.call_id for j in left}:
                self._tries.pop(call_id, None)
                self._retry_at.pop(call_id, None)
            jobs += left
        results = await asyncio.gather(
            *(self.derive(j, aml=aml) for j in jobs), return_exceptions=True
        )
        failed = []
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(result)
                # Not again at every poll: 1, 2, 4 ... s, at most a minute, per call.
                tries = self._tries.get(job.call_id, 0) + 1
                self._tries[job.call_id] = tries
                self._retry_at[job.call_id] = clock + min(60.0, 2.0 ** (tries - 1))
                log.error("sweep: deriving a call's location failed: %s", result, exc_info=result)
            else:
                self._tries.pop(job.call_id, None)
                self._retry_at.pop(job.call_id, None)
        if failed:
            self.metrics.inc("location_failures", len(failed))
        done = batched + len(jobs) - len(failed) + matched
        if done:
            self.metrics.inc("locations_swept", done)
        return done

    def cell_only(self, job: CallLocationJob, aml: frozenset[str] | None) -> bool:
        """Whether a call's whole derivation is its network cell (or nothing): no PIDF-LO,
        no by-reference location to fetch, no AML message that may wait for it. Such calls
        are derived together, set-based; any other goes through :meth:`derive`."""
        if job.geoloc_effective and job.geoloc_effective.strip():
            return False
        if self.settings.locations.fetch_geolocation_by_reference and (
            fetchable_reference(job.geolocation) is not None
        ):
            return False
        return not may_have_pending_aml(job.aml_number, aml)

    async def _derive_cell_only(self, jobs: list[CallLocationJob]) -> list[CallLocationJob]:
        """Derives ``jobs`` (all :meth:`cell_only`) in one transaction; returns those left to
        the per-call path: all of them when the transaction failed."""
        conf = self.settings.locations
        ids = {j.call_id for j in jobs}
        self._locating |= ids
        try:
            async with self._slots:
                started = time.perf_counter()
                async with self.sessionmaker() as session:
                    left = await derive_cell_only_calls(
                        session=session,
                        jobs=jobs,
                        gnb_id_bits=conf.gnb_id_bits,
                        min_radius_m=conf.cell_min_radius_m,
                    )
                    await session.commit()
                self.metrics.observe("location_batch_derivation", time.perf_counter() - started)
        except Exception:
            self.metrics.inc("location_batch_failures")
            log.exception("sweep: deriving %d calls together failed; one by one instead", len(jobs))
            return jobs
        finally:
            self._locating -= ids
        return left

    async def run(self, *, poll_s: float) -> None:
        """The worker's loop: every ``poll_s`` (at once again while there is more to do),
        the calls not yet done, whatever their age."""
        log.info("location worker: looking for calls to locate every %.2f s", poll_s)
        while True:
            done = await self.sweep(grace=timedelta(0))
            if done < SWEEP_LIMIT:
                await asyncio.sleep(poll_s)
