"""Telling a database that is away from a statement that failed on its own data."""

from __future__ import annotations

import socket

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLSTATEs of a server that is not there to serve: connection exceptions (class 08), shutting
# down or starting up (57P01-57P03), and a read-only server (25006: connected to a standby, as
# after a failover before the URL's next host is tried).
_AWAY_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "25006"})


def unreachable(exc: BaseException) -> bool:
    """The database was away (refused or lost connection, a timeout, a server shutting down,
    starting up or read-only); False for an error of the statement itself (a constraint, bad
    data, a deadlock), and for errors that are not the database's at all (a file, a bug)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError | InterfaceError | ConnectionError | TimeoutError):
            return True
        if isinstance(current, socket.gaierror):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        code = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(code, str) and (code.startswith("08") or code in _AWAY_SQLSTATES):
            return True
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return False
