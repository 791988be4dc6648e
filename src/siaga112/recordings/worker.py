"""The recordings worker, an asyncio task of `siaga112 serve`: links finished recordings to
their calls every ``sweep_s`` and purges expired ones every ``purge_every_s``.

Its first sweep looks back over the whole retention period, so recordings made while siaga112
was down (for hours or days) are linked when it comes back; later sweeps look at the last
``sweep_days`` date directories only. Nothing here touches a live call: Asterisk writes the
files whether this worker runs or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.config import RecordingSettings
from siaga112.metrics import Metrics
from siaga112.recordings.service import PurgeResult, SweepResult, purge_expired, sweep_recordings

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RecordingWorker:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: RecordingSettings,
        root: Path,
        metrics: Metrics,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.root = root
        self.metrics = metrics
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep(self, *, days: int | None = None) -> SweepResult:
        started = time.perf_counter()
        result = await sweep_recordings(
            sessionmaker=self.sessionmaker,
            root=self.root,
            days=days if days is not None else self.settings.sweep_days,
            now=self.clock(),
            settle_s=self.settings.settle_s,
            stale_s=self.settings.stale_s,
        )
        self.metrics.observe("recording_sweep", time.perf_counter() - started)
        if result.linked:
            self.metrics.inc("recordings_linked", result.linked)
            log.info("linked %d recordings to their calls", result.linked)
        return result

    async def purge(self) -> PurgeResult:
        result = await purge_expired(
            sessionmaker=self.sessionmaker,
            root=self.root,
            retention_days=self.settings.retention_days,
            now=self.clock(),
        )
        if result.purged or result.orphans:
            self.metrics.inc("recordings_purged", result.purged)
            self.metrics.inc("recording_orphans_purged", result.orphans)
            log.info(
                "retention: deleted %d recordings and %d unlinked files older than %d days",
                result.purged,
                result.orphans,
                self.settings.retention_days,
            )
        return result

    async def _run(self) -> None:
        # The whole retention window once (downtime), then the recent days.
        days = self.settings.retention_days + 1
        next_purge = time.monotonic()
        while True:
            try:
                await self.sweep(days=days)
                days = self.settings.sweep_days
            except Exception:
                self.metrics.inc("recording_sweep_failures")
                log.exception("recording sweep failed; will retry")
            if time.monotonic() >= next_purge:
                try:
                    await self.purge()
                except Exception:
                    self.metrics.inc("recording_purge_failures")
                    log.exception("recording purge failed; will retry")
                next_purge = time.monotonic() + self.settings.purge_every_s
            await asyncio.sleep(self.settings.sweep_s)
