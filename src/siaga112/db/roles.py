"""Least-privilege PostgreSQL roles: who owns the schema, what the running service may do, what
Asterisk may read.

Three roles, named by the configuration (docs/operations.md, "Database roles"):
- the owner (user of ``database_owner_url``) owns the database, its schema and every table;
  migrations run as it;
- the service (user of ``database_url``: serve, workers, the CLI) reads and writes rows and
  nothing more: no CREATE, ALTER, DROP or TRUNCATE, and the audit trail (``APPEND_ONLY``) only
  grows;
- Asterisk (``pbx.db_user``) reads the PJSIP realtime tables and nothing else.

``ensure_roles`` (``siaga112 db roles``, with an administrator's URL) creates or updates them;
``apply_grants`` is the one grant policy, applied by it and after every migration, so a table a
new migration adds is granted like the others (default privileges cover what the owner creates
in between).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from pydantic import PostgresDsn, SecretStr

from siaga112.config import Settings
from siaga112.db import scram
from siaga112.db.url import asyncpg_dsn, parse, with_database, with_user

log = logging.getLogger(__name__)

# Read and written by the service; never updated or deleted by it (nothing legitimately does:
# incidents are never deleted, and only stream_events, which is not audit, has a retention purge).
APPEND_ONLY = ("audit_events", "incident_events")
# What Asterisk's realtime link reads (sorcery.conf, extconfig.conf).
ASTERISK_TABLES = ("ps_endpoints", "ps_auths", "ps_aors")
# Read by every process at start to check the schema is current; written by migrations only.
READ_ONLY = ("alembic_version",)
SERVICE_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class Role:
    name: str
    password: str | None = None


@dataclass(frozen=True)
class DbRoles:
    database: str
    owner: Role
    service: Role
    asterisk: Role | None


def roles_from(settings: Settings) -> DbRoles | None:
    """The roles the configuration names, or None for a one-role setup (the service's URL is
    also the owner's: nothing to separate)."""
    runtime = parse(settings.database_url_str)
    owner = parse(settings.database_owner_url_str)
    if not runtime.username or not owner.username or runtime.username == owner.username:
        return None
    asterisk = None
    if settings.pbx.db_user and settings.pbx.db_user not in (runtime.username, owner.username):
        password = settings.pbx.db_password
        asterisk = Role(settings.pbx.db_user, password.get_secret_value() if password else None)
    return DbRoles(
        database=runtime.database or "siaga112",
        owner=Role(owner.username, owner.password),
        service=Role(runtime.username, runtime.password),
        asterisk=asterisk,
    )


def local_roles(database: str) -> DbRoles:
    """Roles named after their database, without passwords (local trust authentication): the
    development stack and the tests, where several databases share one cluster and roles are
    cluster-wide, so each database gets roles of its own."""
    return DbRoles(
        database=database,
        owner=Role(f"{database}_owner"),
        service=Role(f"{database}_app"),
        asterisk=Role(f"{database}_asterisk"),
    )


def role_url(url: str, role: Role, *, database: str | None = None) -> str:
    """``url`` (any role's) for another role, rendered with its password."""
    u = with_user(url, role.name, role.password)
    return u if database is None else with_database(u, database)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def _connect(url: str, database: str) -> asyncpg.Connection:
    # Every server of the URL, and its options (target_session_attrs picks the primary).
    return await asyncpg.connect(
        asyncpg_dsn(with_database(url, database)), user=parse(url).username or "postgres"
    )


async def _ensure_role(conn: asyncpg.Connection, role: Role) -> None:
    # Never a superuser, never able to create roles or databases, member of nothing: whatever it
    # was before (an ALTER on every run keeps it so).
    attrs = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
    if role.password is not None:
        # The verifier, not the password: the clear text never reaches the server (its log with
        # log_statement = ddl, pg_stat_activity).
        attrs += f" PASSWORD {_literal(scram.verifier(role.password))}"
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role.name)
    if not exists:
        try:
            await conn.execute(f"CREATE ROLE {_ident(role.name)} {attrs}")
            log.info("created role %s", role.name)
            return
        except asyncpg.DuplicateObjectError:
            pass  # created meanwhile by a concurrent run: update it like an existing one
    await conn.execute(f"ALTER ROLE {_ident(role.name)} {attrs}")


async def _give_to_owner(conn: asyncpg.Connection, owner: str) -> None:
    """Objects in the public schema owned by someone else (a database migrated by a superuser
    before roles were separated) become the owner's; extension members are left alone."""
    o = _ident(owner)
    rows = await conn.fetch(
        """
        SELECT c.oid::regclass::text AS name, c.relkind::text AS kind FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r','p','v','m','S','f')
          AND pg_get_userbyid(c.relowner) <> $1
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                          WHERE d.objid = c.oid AND d.deptype IN ('e','a','i'))
        """,
        owner,
    )
    kinds = {"v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE", "f": "FOREIGN TABLE"}
    for r in rows:
        await conn.execute(f"ALTER {kinds.get(r['kind'], 'TABLE')} {r['name']} OWNER TO {o}")
    for r in await conn.fetch(
        """
        SELECT p.oid::regprocedure::text AS name FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND pg_get_userbyid(p.proowner) <> $1
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        """,
        owner,
    ):
        await conn.execute(f"ALTER ROUTINE {r['name']} OWNER TO {o}")
    for r in await conn.fetch(
        """
        SELECT t.oid::regtype::text AS name FROM pg_type t
        WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e','d')
          AND pg_get_userbyid(t.typowner) <> $1
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')
        """,
        owner,
    ):
        await conn.execute(f"ALTER TYPE {r['name']} OWNER TO {o}")


async def ensure_roles(admin_url: str, roles: DbRoles) -> None:
    """Creates or updates the roles and the database, hands the schema to the owner and
    applies the grants. Idempotent; run with a superuser's (or CREATEROLE and CREATEDB) URL."""
    db = _ident(roles.database)
    conn = await _connect(admin_url, parse(admin_url).database or "postgres")
    try:
        for role in (roles.owner, roles.service, roles.asterisk):
            if role is not None:
                await _ensure_role(conn, role)
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", roles.database)
        if not exists:
            await conn.execute(f"CREATE DATABASE {db} OWNER {_ident(roles.owner.name)}")
            log.info("created database %s", roles.database)
        else:
            await conn.execute(f"ALTER DATABASE {db} OWNER TO {_ident(roles.owner.name)}")
        # Only the named roles may connect; the service may make temporary tables (the cell
        # import stages rows in one).
        await conn.execute(f"REVOKE ALL ON DATABASE {db} FROM PUBLIC")
        await conn.execute(
            f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {_ident(roles.service.name)}"
        )
        if roles.asterisk is not None:
            await conn.execute(f"GRANT CONNECT ON DATABASE {db} TO {_ident(roles.asterisk.name)}")
    finally:
        await conn.close()
    conn = await _connect(admin_url, roles.database)
    try:
        async with conn.transaction():
            await conn.execute(f"ALTER SCHEMA public OWNER TO {_ident(roles.owner.name)}")
            await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            await _give_to_owner(conn, roles.owner.name)
            await apply_grants(conn, roles)
    finally:
        await conn.close()


async def apply_grants(conn: asyncpg.Connection, roles: DbRoles) -> None:
    """The grant policy over every table and sequence in the public schema; run as the owner
    (after migrations) or an administrator. Idempotent."""
    owner, service = _ident(roles.owner.name), _ident(roles.service.name)
    dml = ", ".join(SERVICE_TABLE_PRIVILEGES)
    await conn.execute(f"GRANT USAGE ON SCHEMA public TO {service}")
    # Tables the owner creates later (a new migration) are the service's to use at once.
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT {dml} ON TABLES TO {service}"
    )
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
        f"GRANT USAGE, SELECT ON SEQUENCES TO {service}"
    )
    await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {service}")
    await conn.execute(f"GRANT {dml} ON ALL TABLES IN SCHEMA public TO {service}")
    await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {service}")
    present = set(await _tables(conn))
    for table in APPEND_ONLY:
        if table in present:
            await conn.execute(f"REVOKE UPDATE, DELETE ON {_ident(table)} FROM {service}")
    for table in READ_ONLY:
        if table in present:
            await conn.execute(f"REVOKE INSERT, UPDATE, DELETE ON {_ident(table)} FROM {service}")
    if roles.asterisk is not None:
        asterisk = _ident(roles.asterisk.name)
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {asterisk}")
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {asterisk}")
        await conn.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {asterisk}")
        for table in ASTERISK_TABLES:
            if table in present:
                await conn.execute(f"GRANT SELECT ON {_ident(table)} TO {asterisk}")


async def _tables(conn: asyncpg.Connection) -> Sequence[str]:
    rows = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    return [r["tablename"] for r in rows]


async def missing_roles(conn: asyncpg.Connection, roles: DbRoles) -> list[str]:
    names = [r.name for r in (roles.owner, roles.service, roles.asterisk) if r is not None]
    found = {
        r["rolname"]
        for r in await conn.fetch("SELECT rolname FROM pg_roles WHERE rolname = ANY($1)", names)
    }
    return [n for n in names if n not in found]


async def drop_roles(admin_url: str, roles: DbRoles) -> None:
    """Drops the roles (after their database is gone): test and bench databases."""
    conn = await _connect(admin_url, parse(admin_url).database or "postgres")
    try:
        for role in (roles.asterisk, roles.service, roles.owner):
            if role is not None:
                await conn.execute(f"DROP ROLE IF EXISTS {_ident(role.name)}")
    finally:
        await conn.close()


def with_local_roles(settings: Settings) -> tuple[Settings, DbRoles, str]:
    """For the development stack: ``settings`` whose ``database_url`` (a superuser on this
    machine) becomes the administrator's, with the per-database roles of ``local_roles`` for the
    owner, the service and Asterisk. Returns the new settings, the roles and the admin URL."""
    admin = (
        settings.database_admin_url.get_secret_value()
        if settings.database_admin_url is not None
        else settings.database_url_str
    )
    database = parse(settings.database_url_str).database or "siaga112"
    roles = local_roles(database)
    assert roles.asterisk is not None
    local = settings.model_copy(
        update={
            "database_url": PostgresDsn(role_url(admin, roles.service, database=database)),
            "database_owner_url": SecretStr(role_url(admin, roles.owner, database=database)),
            "database_admin_url": SecretStr(admin),
            "pbx": settings.pbx.model_copy(update={"db_user": roles.asterisk.name}),
        }
    )
    return local, roles, admin
