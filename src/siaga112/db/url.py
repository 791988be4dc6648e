"""The database URL for each client that connects with it.

``SIAGA112_DATABASE_URL`` may name several servers the libpq way,
``postgresql+asyncpg://user@hostA:5432,hostB:5432/db?target_session_attrs=read-write`` (a
primary and its streaming replica: whichever accepts writes is used). asyncpg reads that form
itself, but SQLAlchemy's URL parser does not (it takes the comma into the port); its asyncpg
dialect wants the hosts as repeated ``?host=HOST:PORT`` query arguments instead. Everything that
connects goes through here so that both forms work everywhere: the engine, the raw asyncpg
connections (event hub, lease), Alembic and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from sqlalchemy.engine import URL, make_url

DEFAULT_PORT = 5432


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """A database URL taken apart: the servers in the order they are tried."""

    drivername: str
    username: str | None
    password: str | None
    hosts: tuple[tuple[str, int], ...]
    database: str | None
    query: tuple[tuple[str, str], ...]

    @property
    def multi_host(self) -> bool:
        return len(self.hosts) > 1


def _split_host(item: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, ""
    return unquote(host) or "127.0.0.1", int(port) if port else DEFAULT_PORT


def parse(database_url: str) -> DatabaseTarget:
    parts = urlsplit(database_url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if not at:
        userinfo, hostlist = "", parts.netloc
    username, colon, password = userinfo.partition(":")
    hosts = tuple(_split_host(h) for h in hostlist.split(",") if h) or (
        ("127.0.0.1", DEFAULT_PORT),
    )
    # ?host=HOST:PORT arguments (SQLAlchemy's own multi-host form) count as servers too.
    query: list[tuple[str, str]] = []
    extra_hosts: list[tuple[str, int]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "host":
            extra_hosts.append(_split_host(value))
        else:
            query.append((key, value))
    if extra_hosts and not hostlist:
        hosts = tuple(extra_hosts)
    return DatabaseTarget(
        drivername=parts.scheme,
        username=unquote(username) or None,
        password=unquote(password) if colon else None,
        hosts=hosts,
        database=unquote(parts.path.lstrip("/")) or None,
        query=tuple(query),
    )


def sqlalchemy_url(database_url: str) -> URL:
    """The URL SQLAlchemy's engine and Alembic take: unchanged for one server; for several,
    the hosts as ``?host=HOST:PORT`` arguments (asyncpg dialect, SQLAlchemy 2.0.18+)."""
    target = parse(database_url)
    if not target.multi_host:
        return make_url(database_url)
    query: dict[str, str | tuple[str, ...]] = dict(target.query)
    query["host"] = tuple(f"{h}:{p}" for h, p in target.hosts)
    return URL.create(
        drivername=target.drivername,
        username=target.username,
        password=target.password,
        database=target.database,
        query=query,
    )


def asyncpg_dsn(database_url: str) -> str:
    """The URL as a plain libpq-style DSN for a raw asyncpg connection (LISTEN, the lease,
    COPY): no driver name, every server in the netloc (``host1:p1,host2:p2``, which asyncpg
    reads; it would keep only the last of repeated ``?host=`` arguments)."""
    target = parse(database_url)
    auth = ""
    if target.username:
        auth = quote(target.username, safe="")
        if target.password is not None:
            auth += ":" + quote(target.password, safe="")
        auth += "@"
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in target.hosts)
    query = f"?{urlencode(target.query)}" if target.query else ""
    return f"postgresql://{auth}{hosts}/{quote(target.database or '', safe='')}{query}"


def with_database(database_url: str, database: str) -> str:
    """The same servers and options, another database (``postgres`` to create the first)."""
    parts = urlsplit(database_url)
    return parts._replace(path="/" + database).geturl()


def with_user(database_url: str, username: str, password: str | None) -> str:
    """The same servers, database and options for another role (``password`` None: none)."""
    parts = urlsplit(database_url)
    hostlist = parts.netloc.rpartition("@")[2]
    auth = quote(username, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return parts._replace(netloc=f"{auth}@{hostlist}").geturl()


def describe(database_url: str) -> str:
    """For messages and logs: servers and database, never the password."""
    target = parse(database_url)
    hosts = ",".join(f"{h}:{p}" for h, p in target.hosts)
    user = f"{target.username}@" if target.username else ""
    return f"postgresql://{user}{hosts}/{target.database or ''}"
