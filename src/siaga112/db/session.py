"""Engine and session factory; built by the composition root, never at import time."""

from __future__ import annotations

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
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a plain libpq/asyncpg DSN (for LISTEN on a raw connection)."""
    return db_url.asyncpg_dsn(database_url)
