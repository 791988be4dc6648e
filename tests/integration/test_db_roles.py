"""Least-privilege roles (siaga112.db.roles): the service's role reads and writes rows and nothing
more, the audit trail only grows, Asterisk's role reads the PJSIP tables only, and every table a
migration adds is granted like the others."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from siaga112.cli import main
from siaga112.db import roles as roles_module
from siaga112.db import scram
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.roles import (
    APPEND_ONLY,
    ASTERISK_TABLES,
    READ_ONLY,
    drop_roles,
    ensure_roles,
    local_roles,
    role_url,
)
from siaga112.db.session import asyncpg_dsn
from tests.conftest import ADMIN_URL, asterisk_role, owner_url


async def _as(database_url: str, user: str | None = None) -> asyncpg.Connection:
    url = make_url(asyncpg_dsn(database_url))
    if user is not None:
        url = url.set(username=user)
    return await asyncpg.connect(url.render_as_string(hide_password=False))


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await _as(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def asterisk(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await _as(database_url, asterisk_role(database_url))
    yield conn
    await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE incidents",
        "ALTER TABLE calls ADD COLUMN x integer",
        "CREATE TABLE intruder (i integer)",
        "TRUNCATE stream_events",
        "CREATE FUNCTION intruder() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER ROLE CURRENT_USER SUPERUSER",
        "UPDATE audit_events SET actor = 'someone else'",
        "DELETE FROM audit_events",
        "UPDATE incident_events SET actor = 'someone else'",
        "DELETE FROM incident_events",
        "DELETE FROM alembic_version",
    ],
)
async def test_the_service_role_cannot_change_the_schema_or_rewrite_the_audit_trail(
    service: asyncpg.Connection, statement: str
) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await service.execute(statement)


async def test_the_service_role_is_no_superuser_and_owns_nothing(
    service: asyncpg.Connection,
) -> None:
    me = await service.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    )
    assert me is not None
    assert not any(me.values())
    owned = await service.fetch(
        "SELECT relname FROM pg_class WHERE relowner = "
        "(SELECT oid FROM pg_roles WHERE rolname = current_user)"
    )
    assert owned == []
    # Inherits no one's privileges.
    assert (
        await service.fetchval(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r "
            "ON r.oid = m.member WHERE r.rolname = current_user"
        )
        == 0
    )


async def test_every_table_is_granted_to_the_service_role(service: asyncpg.Connection) -> None:
    tables = [
        r["tablename"]
        for r in await service.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ]
    assert "calls" in tables
    lacking = []
    for table in tables:
        wanted = ["SELECT"]
        if table not in READ_ONLY:
            wanted.append("INSERT")
            if table not in APPEND_ONLY:
                wanted += ["UPDATE", "DELETE"]
        for privilege in wanted:
            if not await service.fetchval(
                "SELECT has_table_privilege(current_user, $1, $2)", table, privilege
            ):
                lacking.append(f"{privilege} on {table}")
    assert lacking == []
    sequences = await service.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'S' "
        "AND c.relnamespace = 'public'::regnamespace "
        "AND NOT has_sequence_privilege(current_user, c.oid, 'USAGE')"
    )
    assert sequences == []


async def test_the_service_role_writes_rows_listens_and_takes_advisory_locks(
    service: asyncpg.Connection,
) -> None:
    tr = service.transaction()
    await tr.start()
    try:
        await service.execute(
            "INSERT INTO audit_events (at, actor, action, entity_type, entity_id) "
            "VALUES (now(), 'test', 'roles.check', 'test', '1')"
        )
        await service.execute("LISTEN siaga112_roles_check")
        await service.execute("SELECT pg_notify('siaga112_roles_check', 'x')")
        assert await service.fetchval("SELECT pg_try_advisory_xact_lock(4242)")
        # The live event stream's writers check (siaga112.events.hub).
        await service.fetch("SELECT * FROM pg_locks WHERE relation = 'stream_events'::regclass")
        # The cell import stages rows in a temporary table.
        await service.execute("CREATE TEMPORARY TABLE staged (i integer)")
    finally:
        await tr.rollback()


async def test_asterisk_reads_the_pjsip_tables_and_nothing_else(
    asterisk: asyncpg.Connection,
) -> None:
    for table in ASTERISK_TABLES:
        await asterisk.fetch(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608
    # What res_config_pgsql asks at load: the tables' columns.
    columns = await asterisk.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'ps_auths'"
    )
    assert columns
    for statement in (
        "UPDATE ps_auths SET md5_cred = 'x'",
        "INSERT INTO ps_aors (id) VALUES ('intruder')",
        "DELETE FROM ps_endpoints",
        "SELECT * FROM incidents LIMIT 1",
        "SELECT * FROM calls LIMIT 1",
        "SELECT * FROM locations LIMIT 1",
        "SELECT * FROM api_keys LIMIT 1",
        "SELECT * FROM audit_events LIMIT 1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await asterisk.execute(statement)


async def test_a_table_the_owner_adds_later_is_the_service_roles_to_use(
    database_url: str, service: asyncpg.Connection
) -> None:
    owner = await asyncpg.connect(asyncpg_dsn(owner_url(database_url)))
    name = f"later_{uuid.uuid4().hex[:8]}"
    try:
        await owner.execute(f"CREATE TABLE {name} (id bigserial PRIMARY KEY, v text)")
        await service.execute(f"INSERT INTO {name} (v) VALUES ('x')")  # noqa: S608
        await service.execute(f"UPDATE {name} SET v = 'y'")  # noqa: S608
        await service.execute(f"DELETE FROM {name}")  # noqa: S608
    finally:
        await owner.execute(f"DROP TABLE IF EXISTS {name}")
        await owner.close()


@pytest.fixture
def legacy_url() -> Iterator[str]:
    """A database migrated by the superuser, as every one was before the roles."""
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/siaga112_test_legacy_{uuid.uuid4().hex[:8]}"
    upgrade(url)
    yield url
    asyncio.run(drop_database(url))
    asyncio.run(drop_roles(ADMIN_URL, local_roles(make_url(url).database or "")))


async def test_roles_take_over_a_database_the_superuser_migrated_and_twice_changes_nothing(
    legacy_url: str,
) -> None:
    roles = local_roles(make_url(legacy_url).database or "")
    await ensure_roles(ADMIN_URL, roles)
    await ensure_roles(ADMIN_URL, roles)
    conn = await asyncpg.connect(asyncpg_dsn(legacy_url))
    try:
        foreign = await conn.fetch(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
            "AND c.relkind IN ('r','S','v') AND pg_get_userbyid(c.relowner) <> $1",
            roles.owner.name,
        )
        assert foreign == []
        functions = await conn.fetch(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace "
            "AND pg_get_userbyid(proowner) <> $1",
            roles.owner.name,
        )
        assert functions == []
        assert await conn.fetchval(
            "SELECT has_table_privilege($1, 'calls', 'INSERT')", roles.service.name
        )
    finally:
        await conn.close()


def test_db_roles_then_db_upgrade_from_the_settings_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an admin runs (docs/operations.md): names and passwords come from the three URLs
    and SIAGA112_PBX__DB_*; twice changes nothing; no password is printed."""
    database = f"siaga112_test_cli_{uuid.uuid4().hex[:8]}"
    roles = local_roles(database)
    secret = uuid.uuid4().hex
    assert roles.asterisk is not None
    monkeypatch.setenv("SIAGA112_DATABASE_ADMIN_URL", ADMIN_URL)
    monkeypatch.setenv(
        "SIAGA112_DATABASE_OWNER_URL", role_url(ADMIN_URL, roles.owner, database=database)
    )
    monkeypatch.setenv(
        "SIAGA112_DATABASE_URL", role_url(ADMIN_URL, roles.service, database=database)
    )
    monkeypatch.setenv("SIAGA112_PBX__DB_USER", roles.asterisk.name)
    monkeypatch.setenv("SIAGA112_PBX__DB_PASSWORD", secret)
    try:
        for _ in range(2):
            assert main(["db", "roles"]) == 0
            assert main(["db", "upgrade"]) == 0
        out = capsys.readouterr()
        assert secret not in out.out + out.err

        async def check() -> None:
            conn = await asyncpg.connect(asyncpg_dsn(f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}"))
            try:
                assert (
                    await conn.fetchval(
                        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'calls'"
                    )
                    == roles.owner.name
                )
                assert await conn.fetchval(
                    "SELECT has_table_privilege($1, 'ps_auths', 'SELECT') "
                    "AND NOT has_table_privilege($1, 'calls', 'SELECT')",
                    roles.asterisk.name,  # type: ignore[union-attr]
                )
                # The Asterisk role was given its password (SCRAM or md5, never in clear).
                assert await conn.fetchval(
                    "SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1",
                    roles.asterisk.name,  # type: ignore[union-attr]
                )
            finally:
                await conn.close()

        asyncio.run(check())
    finally:
        asyncio.run(drop_database(f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}"))
        asyncio.run(drop_roles(ADMIN_URL, roles))


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "s3cr'et\"$x",
        "kata sandi\u00a0rahasia",
        "\u2168ka",
        "a\u0007b",
    ],
)
def test_scram_verifier_is_the_servers_own(password: str) -> None:
    """The verifier `db roles` sends in place of the password is the one PostgreSQL builds from the
    clear password (same salt and iterations), so the role signs in with that password: ASCII,
    quotes, a non-ASCII space and a character SASLprep maps (NFKC), and one it refuses (raw)."""
    name = f"scram_{uuid.uuid4().hex[:10]}"

    async def check() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
        try:
            await conn.execute("SET password_encryption = 'scram-sha-256'")
            await conn.execute(f'CREATE ROLE "{name}" LOGIN PASSWORD {_sql_literal(password)}')
            stored = await conn.fetchval(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1", name
            )
            parsed = scram.parse_verifier(stored)
            assert parsed is not None, stored
            iterations, salt = parsed
            assert scram.verifier(password, salt=salt, iterations=iterations) == stored
            # ... and a wrong password gives another one.
            assert scram.verifier(password + "x", salt=salt, iterations=iterations) != stored
        finally:
            await conn.execute(f'DROP ROLE IF EXISTS "{name}"')
            await conn.close()

    asyncio.run(check())


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def test_role_password_never_reaches_the_server_in_clear() -> None:
    """`ensure_roles` sends a SCRAM verifier it computed: no statement it sends carries the
    password (each is recorded on its way), and the stored verifier is the password's."""
    database = f"roles_scram_{uuid.uuid4().hex[:8]}"
    secret = f"rahasia-{uuid.uuid4().hex}"
    roles = local_roles(database)
    roles = dataclasses.replace(roles, service=dataclasses.replace(roles.service, password=secret))
    sent: list[str] = []
    real_connect = roles_module._connect

    class Recording:
        """The admin connection, with every statement recorded on its way to the server."""

        def __init__(self, conn: asyncpg.Connection) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> Any:
            method = getattr(self._conn, name)
            if name not in ("execute", "fetch", "fetchval", "fetchrow"):
                return method

            async def recorded(query: str, *a: Any, **k: Any) -> Any:
                sent.append(query)
                return await method(query, *a, **k)

            return recorded

    async def recording_connect(url: str, database: str) -> Any:
        return Recording(await real_connect(url, database))

    async def check() -> None:
        with mock.patch.object(roles_module, "_connect", recording_connect):
            await ensure_roles(ADMIN_URL, roles)
        assert any("PASSWORD 'SCRAM-SHA-256$" in q for q in sent), sent
        assert not [q for q in sent if secret in q]
        conn = await asyncpg.connect(asyncpg_dsn(ADMIN_URL))
        try:
            stored = await conn.fetchval(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1", roles.service.name
            )
            parsed = scram.parse_verifier(stored)
            assert parsed is not None
            assert scram.verifier(secret, salt=parsed[1], iterations=parsed[0]) == stored
        finally:
            await conn.close()

    try:
        asyncio.run(check())
    finally:
        asyncio.run(drop_database(f"{ADMIN_URL.rsplit('/', 1)[0]}/{database}"))
        asyncio.run(drop_roles(ADMIN_URL, roles))
