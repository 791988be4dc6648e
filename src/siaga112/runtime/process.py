"""What every siaga112 process (serve, worker) does at start: open the database only when it is
reachable and at this code's migrations, run on uvloop, and (a child) end with its parent."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.config import Settings
from siaga112.db.manage import UnknownRevision, pending_migrations
from siaga112.db.session import make_engine
from siaga112.db.url import describe


class StartupError(Exception):
    """siaga112 cannot serve: said in one line, no traceback."""


class SchemaNotCurrent(StartupError):
    pass


class DatabaseUnreachable(StartupError):
    pass


async def open_database(settings: Settings) -> AsyncEngine:
    """The engine, once the database is reachable and exactly at this code's migrations."""
    engine = make_engine(settings)
    try:
        pending = await pending_migrations(engine)
    except UnknownRevision as exc:
        await engine.dispose()
        raise SchemaNotCurrent(str(exc)) from exc
    except (OSError, DBAPIError) as exc:
        await engine.dispose()
        where = describe(settings.database_url_str)
        raise DatabaseUnreachable(
            f"PostgreSQL at {where} is not reachable ({type(exc).__name__}: {exc}); "
            "start it (make run does) or set SIAGA112_DATABASE_URL"
        ) from exc
    if pending:
        await engine.dispose()
        raise SchemaNotCurrent(
            f"the database lacks migrations {sorted(pending)}: run `siaga112 db upgrade`"
        )
    async with engine.connect() as conn:
        superuser = await conn.scalar(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
    if superuser:
        log.warning(
            "serving as a PostgreSQL superuser: give the service a role of its own "
            "(siaga112 db roles, docs/operations.md#database-roles)"
        )
    return engine


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when available: the AGI hot path measured ~20% faster on it (DESIGN.md §3)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    return uvloop.new_event_loop


log = logging.getLogger(__name__)

# Set by a parent (`siaga112 serve`) for the children it starts: the pid they must not outlive.
PARENT_PID_ENV = "SIAGA112_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def parent_to_follow() -> int | None:
    raw = os.environ.get(PARENT_PID_ENV, "")
    return int(raw) if raw.isdigit() else None


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when its parent ends, however it ends (also
    ``kill -9``): Linux's PR_SET_PDEATHSIG. A parent already gone by now is not waited for."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is not None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:
        log.error("parent %d ended before this worker started; exiting", parent_pid)
        raise SystemExit(0)


async def exit_when_orphaned(parent_pid: int, *, every_s: float = 1.0) -> None:
    """Returns once the parent is gone (the second guard, where PR_SET_PDEATHSIG is missing
    or was reset): the caller then shuts down."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - no event tells of a parent's end
        await asyncio.sleep(every_s)
    log.error("parent %d ended; this worker ends with it", parent_pid)
