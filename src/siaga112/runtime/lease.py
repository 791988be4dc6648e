"""One holder at a time, across processes and hosts: a PostgreSQL session-level advisory lock
held on a connection of its own.

Exactly one process may follow a PBX's AMI event stream and reconcile its CDR file: two
followers write the same calls twice over and deadlock on their progress. Whoever takes the
lease follows; the others are warm standbys: what they will run is built beforehand
(``prepare``), and each waits inside ``pg_advisory_lock`` on its own connection. The lock lives
as long as its connection: when the holder dies (even ``kill -9``) the server ends the session
and grants the lock to a waiter at once, with no polling interval in between. The holder
checks its connection every ``check_s``; once it is gone (PostgreSQL restarted or unreachable)
the lock may be someone else's, so the holder stops following and competes again like
everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import asyncpg

from siaga112.metrics import Metrics

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a standby's lock wait runs before it is renewed (proving its connection alive).
# Each renewal is a "canceling statement due to lock timeout" ERROR in PostgreSQL's log, so
# not every few seconds: a dead server is found sooner by the keepalives below.
STANDBY_CHECK_S = 60.0
# Per session, so that a lease's host that vanishes (no FIN, no RST) frees its lock within
# seconds rather than when the server's default TCP timeouts give up, whatever postgresql.conf
# says (the settings are the session's own; ignored on a Unix socket).
KEEPALIVES = {
    "tcp_keepalives_idle": "2",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
}


def lease_key(name: str) -> int:
    """The advisory lock's 64-bit key for a lease name (stable across processes and hosts)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Lease(Generic[T]):
    """Runs ``start()`` while this process holds the lease ``name`` and ``stop(...)`` when it
    loses it; :meth:`run` goes on until cancelled (then stops what it started)."""

    def __init__(
        self,
        *,
        dsn: str,
        name: str,
        start: Callable[[], Awaitable[T]],
        stop: Callable[[T], Awaitable[None]],
        metrics: Metrics,
        retry_s: float = 1.0,
        check_s: float = 1.0,
        prepare: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.dsn = dsn
        self.name = name
        self.key = lease_key(name)
        self._start = start
        self._stop = stop
        self._prepare = prepare
        self.metrics = metrics
        self.retry_s = retry_s
        self.check_s = check_s
        self.held = False

    async def run(self) -> None:
        waiting_logged = False
        while True:
            conn: Any = None
            try:
                conn = await asyncpg.connect(
                    self.dsn,
                    timeout=5,
                    # Who holds a lease, as pg_stat_activity shows it (drills, an admin).
                    server_settings={
                        "application_name": f"siaga112 lease pid {os.getpid()}",
                        **KEEPALIVES,
                    },
                )
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key):
                    if self._prepare is not None:
                        await self._prepare()
                    if not waiting_logged:
                        log.info("lease %s is held by another process; standing by", self.name)
                        waiting_logged = True
                    self.metrics.inc("lease_standby")
                    await self._wait_for_lock(conn)
                waiting_logged = False
                await self._hold(conn)
            except asyncio.CancelledError:
                raise
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                self.metrics.inc("lease_connection_failures")
                log.warning("lease %s: database connection failed (%s); retrying", self.name, exc)
                await asyncio.sleep(self.retry_s)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)

    async def _wait_for_lock(self, conn: Any) -> None:
        """Granted by the server the moment the holder's session ends. The wait is cut every
        ``STANDBY_CHECK_S`` by ``lock_timeout`` and taken up again at once, so that a
        connection that died silently is found out (the client times it out) rather than
        waited on for ever."""
        await conn.execute(f"SET lock_timeout = '{int(STANDBY_CHECK_S * 1000)}ms'")
        while True:
            try:
                await asyncio.wait_for(
                    conn.fetchval("SELECT pg_advisory_lock($1)", self.key), STANDBY_CHECK_S + 5
                )
            except asyncpg.LockNotAvailableError:
                continue
            await conn.execute("RESET lock_timeout")
            return

    async def _hold(self, conn: Any) -> None:
        self.held = True
        self.metrics.inc("lease_acquired")
        log.info("lease %s taken: this process follows", self.name)
        thing = await self._start()
        try:
            while True:
                await asyncio.sleep(self.check_s)
                # The lock is as alive as this session: a failed check means it may be gone.
                await asyncio.wait_for(conn.fetchval("SELECT 1"), max(self.check_s, 1.0))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            self.metrics.inc("lease_lost")
            log.warning(
                "lease %s lost with its database session; stopping until retaken", self.name
            )
            raise
        finally:
            self.held = False
            await self._stop(thing)
