"""Callback attempts followed on the AMI: facts about siaga112's own Originates (recognised by
their Uniqueid, see ``callback_legs``) written to their attempt rows, in arrival order, by one
task off the event path; attempts whose outcome never came are closed by a periodic sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.callbacks.legs import LegFact
from siaga112.callbacks.service import expire_stale_attempts, record_leg_fact
from siaga112.metrics import Metrics
from siaga112.telephony.ami_events import AmiEvent
from siaga112.telephony.callback_legs import fact_of

log = logging.getLogger(__name__)

# Callbacks are a few events each; this bound only guards memory if the database is gone.
BACKLOG = 10_000
RETRIES = 3


class CallbackTracker:
    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], metrics: Metrics) -> None:
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        # One writer, in AMI order: an attempt is decided on the facts in when it is written,
        # so its Hangup must never be written before its DialEnd.
        self._facts: asyncio.Queue[LegFact] = asyncio.Queue(maxsize=BACKLOG)
        self._task: asyncio.Task[None] | None = None

    def feed(self, event: AmiEvent) -> None:
        """On the event path: cheap, never raises for events about other channels."""
        fact = fact_of(event)
        if fact is None:
            return
        try:
            self._facts.put_nowait(fact)
        except asyncio.QueueFull:
            self.metrics.inc("callback_facts_dropped")
            log.error("callback fact for %s dropped: backlog full", fact.token)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, *, drain_s: float = 5.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._facts.join(), drain_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            fact = await self._facts.get()
            try:
                await self._write(fact)
            finally:
                self._facts.task_done()

    async def _write(self, fact: LegFact) -> None:
        for attempt in range(1, RETRIES + 1):
            try:
                async with self.sessionmaker() as session:
                    known = await record_leg_fact(session=session, fact=fact)
                    await session.commit()
            except Exception:
                self.metrics.inc("callback_fact_write_failures")
                log.exception("writing callback fact for %s failed (try %d)", fact.token, attempt)
                await asyncio.sleep(0.2 * attempt)
                continue
            self.metrics.inc("callback_facts" if known else "callback_facts_unknown")
            return
        # The attempt's time runs out and the sweep closes it as failed.
        log.error("callback fact for %s given up after %d tries", fact.token, RETRIES)

    async def sweep(self) -> int:
        """Closes attempts whose outcome never came; never raises."""
        try:
            async with self.sessionmaker() as session:
                closed = await expire_stale_attempts(session=session)
                await session.commit()
        except Exception:
            self.metrics.inc("callback_sweep_failures")
            log.exception("callback sweep failed; will retry")
            return 0
        if closed:
            self.metrics.inc("callback_attempts_expired", closed)
            log.warning(
                "%d callback attempt(s) got no outcome from Asterisk: closed as failed", closed
            )
        return closed
