"""A database that is away is told apart from a statement's own failure (siaga112.db.errors):
only the first makes a follower retry its reconciliation every second until the database is
back (runtime/telephony.py)."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from siaga112.db.errors import unreachable


class _Pg(Exception):
    """As asyncpg's errors: the SQLSTATE as `sqlstate`."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _wrapped(orig: Exception) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    "exc",
    [
        OperationalError("connect", {}, ConnectionRefusedError("refused")),
        InterfaceError("SELECT 1", {}, Exception("connection is closed")),
        ConnectionResetError("reset"),
        TimeoutError(),
        socket.gaierror("no such host"),
        _wrapped(_Pg("08006")),  # connection failure
        _wrapped(_Pg("57P01")),  # admin shutdown
        _wrapped(_Pg("57P03")),  # cannot connect now (starting up)
        _wrapped(_Pg("25006")),  # read-only: a standby
        DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
    ],
)
def test_a_database_that_is_away(exc: BaseException) -> None:
    assert unreachable(exc)


def test_away_behind_another_exception() -> None:
    outer = RuntimeError("reconciling failed")
    outer.__cause__ = ConnectionRefusedError("refused")
    assert unreachable(outer)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, _Pg("23505")),  # a duplicate: the data
        _wrapped(_Pg("40P01")),  # a deadlock: the moment, not an outage
        _wrapped(_Pg("22P02")),  # bad input
        PermissionError("CDR file not readable"),  # the file, not the database
        ValueError("a bug"),
    ],
)
def test_not_an_outage(exc: BaseException) -> None:
    assert not unreachable(exc)
