"""Engine and session factory; built by the composition root, never at import time."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from siaga112.config import Settings
from siaga112.db import url as db_url


def make_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        # Several hosts (a primary and its replica) are rewritten into the dialect's form.
        db_url.sqlalchemy_url(settings.database_url_str),
        pool_size=settings.db_pool_size,
        # No pre-ping: it is one more round trip for every session, on the AGI hot path too
        # (about a tenth of the service's time in bench/surge). A connection that died is
        # invalidated on its first error and the pool opens a new one; recycling keeps
        # connections from outliving server-side idle limits.
        pool_recycle=1800,
        # Statement parameters are callers' numbers and locations: never in an exception's
        # text, so never in a log line.
        hide_parameters=True,
        connect_args={"server_settings": {"application_name": application_name()}},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def application_name() -> str:
    """How this process's connections name themselves in ``pg_stat_activity``: the command and
    the pid, ``siaga112 serve [1234]``, ``siaga112 worker [1240]``. A DBA (and bench/surge,
    which counts the CPU of each process's backends) can tell serve and each worker apart. Only
    the subcommand is taken from the command line, never its arguments."""
    argv = sys.argv or [""]
    prog = Path(argv[0]).name
    if prog in ("siaga112", "__main__.py") and len(argv) > 1 and argv[1].isidentifier():
        role = f"siaga112 {argv[1]}"
    else:
        role = prog or "python"
    return f"{role[:40]} [{os.getpid()}]"


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a plain libpq/asyncpg DSN (for LISTEN on a raw connection), naming
    the process as ``application_name`` does (asyncpg takes unknown query keys as settings)."""
    dsn = db_url.asyncpg_dsn(database_url)
    if "application_name" in parse_qs(urlsplit(dsn).query):
        return dsn
    return dsn + ("&" if "?" in dsn else "?") + urlencode({"application_name": application_name()})
