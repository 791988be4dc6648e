"""A multi-host database URL (primary and streaming replica) reaches every client in a form it
reads: SQLAlchemy's asyncpg dialect, raw asyncpg, Alembic, res_pgsql."""

from __future__ import annotations

import asyncpg.connect_utils
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from siaga112.config import Settings
from siaga112.db.url import (
    asyncpg_dsn,
    describe,
    parse,
    sqlalchemy_url,
    with_database,
    with_user,
)
from siaga112.pbxconf.render import _pgsql_values

MULTI = (
    "postgresql+asyncpg://postgres:p%40ss@127.0.0.1:5441,127.0.0.1:5442/siaga112"
    "?target_session_attrs=read-write"
)
SINGLE = "postgresql+asyncpg://postgres@127.0.0.1:5432/siaga112"


def test_a_single_host_url_is_left_as_it_was() -> None:
    assert sqlalchemy_url(SINGLE).render_as_string(hide_password=False) == SINGLE
    assert asyncpg_dsn(SINGLE) == "postgresql://postgres@127.0.0.1:5432/siaga112"


def test_the_engine_dialect_gets_every_host_and_the_session_attrs() -> None:
    _, opts = PGDialect_asyncpg().create_connect_args(sqlalchemy_url(MULTI))  # type: ignore[no-untyped-call]
    assert opts["host"] == ["127.0.0.1", "127.0.0.1"]
    assert opts["port"] == [5441, 5442]
    assert opts["target_session_attrs"] == "read-write"
    assert opts["password"] == "p@ss"
    assert opts["database"] == "siaga112"


def test_a_raw_asyncpg_connection_gets_every_host_and_the_session_attrs() -> None:
    addrs, params = asyncpg.connect_utils._parse_connect_dsn_and_args(
        dsn=asyncpg_dsn(MULTI),
        host=None,
        port=None,
        user=None,
        password=None,
        passfile=None,
        database=None,
        ssl=None,
        service=None,
        servicefile=None,
        direct_tls=None,
        server_settings=None,
        target_session_attrs=None,
        krbsrvname=None,
        gsslib=None,
    )
    assert addrs == [("127.0.0.1", 5441), ("127.0.0.1", 5442)]
    assert params.password == "p@ss"
    assert str(params.target_session_attrs.value) == "read-write"


def test_sqlalchemys_own_host_argument_form_is_read_too() -> None:
    url = "postgresql+asyncpg://u@/db?host=a:1&host=b:2&target_session_attrs=read-write"
    assert parse(url).hosts == (("a", 1), ("b", 2))
    assert asyncpg_dsn(url) == "postgresql://u@a:1,b:2/db?target_session_attrs=read-write"


def test_ipv6_hosts_keep_their_brackets() -> None:
    url = "postgresql+asyncpg://postgres@[::1]:5441,127.0.0.1/siaga112"
    assert parse(url).hosts == (("::1", 5441), ("127.0.0.1", 5432))
    assert asyncpg_dsn(url) == "postgresql://postgres@[::1]:5441,127.0.0.1:5432/siaga112"


def test_another_database_keeps_the_hosts_and_options() -> None:
    assert with_database(MULTI, "postgres") == MULTI.replace("/siaga112?", "/postgres?")


def test_descriptions_never_hold_the_password() -> None:
    assert describe(MULTI) == "postgresql://postgres@127.0.0.1:5441,127.0.0.1:5442/siaga112"


def test_settings_accept_the_multi_host_url() -> None:
    assert Settings(database_url=MULTI).database_url.hosts()[1]["port"] == 5442


@pytest.mark.parametrize("url", [SINGLE, MULTI])
def test_asterisk_realtime_gets_one_server(url: str) -> None:
    values = _pgsql_values(Settings(database_url=url))
    assert (values["pg_host"], values["pg_dbname"]) == ("127.0.0.1", "siaga112")
    assert values["pg_port"] in (5432, 5441)


def test_with_user_keeps_every_server_and_option() -> None:
    url = (
        "postgresql+asyncpg://postgres@127.0.0.1:5441,127.0.0.1:5442/siaga112"
        "?target_session_attrs=read-write"
    )
    assert with_user(url, "siaga112_app", None) == (
        "postgresql+asyncpg://siaga112_app@127.0.0.1:5441,127.0.0.1:5442/siaga112"
        "?target_session_attrs=read-write"
    )
    assert with_user("postgresql://h/db", "a b", "p@ss") == "postgresql://a%20b:p%40ss@h/db"
