"""`siaga112 db upgrade`: create the database when it is missing, then migrate it."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import AsyncEngine

from siaga112.db.url import asyncpg_dsn, parse, sqlalchemy_url

if TYPE_CHECKING:
    from siaga112.db.roles import DbRoles

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
# A non-editable install (the container image) points this at its copy of migrations/.
MIGRATIONS_DIR = Path(os.environ.get("SIAGA112_MIGRATIONS_DIR", PROJECT_ROOT / "migrations"))


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    url = sqlalchemy_url(database_url).render_as_string(hide_password=False)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def connect(database_url: str, *, database: str | None = None) -> asyncpg.Connection:
    """A plain asyncpg connection to the URL's server (of several, the one its
    ``target_session_attrs`` accepts): its database, or ``database``."""
    target = parse(database_url)
    return await asyncpg.connect(
        asyncpg_dsn(database_url),
        user=target.username or "postgres",
        database=database or target.database,
    )


async def ensure_database(database_url: str) -> bool:
    """Creates the database named in the URL if it does not exist. True when it created it."""
    name = parse(database_url).database
    if not name:
        raise ValueError("database URL names no database")
    conn = await connect(database_url, database="postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted}")
        log.info("created database %s", name)
        return True
    finally:
        await conn.close()


async def drop_database(database_url: str) -> None:
    name = parse(database_url).database or ""
    conn = await connect(database_url, database="postgres")
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await conn.close()


class UnknownRevision(RuntimeError):
    """The database was migrated by code this checkout does not have (a newer release or
    another branch): migrating it from here would fail half-way or corrupt it."""


async def _applied_revisions(database_url: str) -> set[str]:
    conn = await connect(database_url)
    try:
        present = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        if not present:
            return set()
        return {
            r["version_num"] for r in await conn.fetch("SELECT version_num FROM alembic_version")
        }
    finally:
        await conn.close()


def _check_known(database_url: str) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(database_url))
    known = {s.revision for s in script.walk_revisions()}
    unknown = asyncio.run(_applied_revisions(database_url)) - known
    if unknown:
        name = parse(database_url).database
        raise UnknownRevision(
            f"database {name} is at revision {', '.join(sorted(unknown))}, which this checkout's "
            f"migrations ({MIGRATIONS_DIR}) do not have: it was migrated by newer or other code. "
            "Run that code, or point SIAGA112_DATABASE_URL at another database."
        )


def upgrade(database_url: str, revision: str = "heads", *, roles: DbRoles | None = None) -> None:
    """Migrates as the role of ``database_url`` (the schema's owner), then applies the grant
    policy for ``roles`` (siaga112.db.roles). Synchronous on purpose: Alembic's async env runs
    its own event loop."""
    asyncio.run(ensure_database(database_url))
    _check_known(database_url)
    command.upgrade(alembic_config(database_url), revision)
    if roles is not None:
        asyncio.run(_grant(database_url, roles))


async def _grant(database_url: str, roles: DbRoles) -> None:
    from siaga112.db.roles import apply_grants, missing_roles

    conn = await connect(database_url)
    try:
        missing = await missing_roles(conn, roles)
        if missing:
            raise MissingRoles(
                f"roles {', '.join(missing)} do not exist: run `siaga112 db roles` (with "
                "SIAGA112_DATABASE_ADMIN_URL) first"
            )
        async with conn.transaction():
            await apply_grants(conn, roles)
    finally:
        await conn.close()


class MissingRoles(RuntimeError):
    """The configured service or Asterisk role has not been created (`siaga112 db roles`)."""


async def pending_migrations(engine: AsyncEngine) -> set[str]:
    """Heads of the migration scripts that the database has not reached ({} when current)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    heads = set(script.get_heads())
    async with engine.connect() as conn:
        try:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        except ProgrammingError:
            return heads
    applied = {r.version_num for r in rows}
    unknown = applied - {s.revision for s in script.walk_revisions()}
    if unknown:
        raise UnknownRevision(
            f"the database is at revision {', '.join(sorted(unknown))}, which this code's "
            "migrations do not have: it was migrated by newer or other code"
        )
    # A head counts as reached when it, or a revision descending from it, is applied.
    reached = set()
    for head in heads:
        for rev in applied:
            if rev == head or head in {r.revision for r in script.iterate_revisions(rev, "base")}:
                reached.add(head)
    return heads - reached
