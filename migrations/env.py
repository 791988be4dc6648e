"""Alembic environment, async. The URL comes from Settings (or `sqlalchemy.url` if a caller
set one on the config), never from alembic.ini."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from siaga112.config import load_settings
from siaga112.db.url import sqlalchemy_url
from siaga112.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    # Several hosts (primary and replica) are rewritten into the form SQLAlchemy parses.
    url = config.get_main_option("sqlalchemy.url") or load_settings().database_url_str
    return sqlalchemy_url(url).render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
