"""Verified console sessions kept in memory for a few seconds, so that a console's reads do not
each look their session up in the database. Only reads may use a kept session: a write always
checks the database, and signing out on this instance forgets the session at once; a session
ended elsewhere (another instance, `siaga112 user disable`) is forgotten here within `ttl_s`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from siaga112.accounts.service import SessionUser, hash_token

Find = Callable[[AsyncSession, str], Awaitable[SessionUser | None]]

# Enough for every console of a centre many times over; past it the oldest entries go.
MAX_ENTRIES = 10_000


class SessionCache:
    def __init__(
        self, find: Find, *, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._find = find
        self._ttl_s = ttl_s
        # Public so that tests can move time on.
        self.clock = clock
        # Keyed by the token's hash, as in the database: the raw token is kept nowhere.
        self._kept: dict[str, tuple[float, SessionUser]] = {}

    async def __call__(
        self, session: AsyncSession, token: str, *, fresh: bool = False
    ) -> SessionUser | None:
        if self._ttl_s <= 0:
            return await self._find(session, token)
        key = hash_token(token)
        now = self.clock()
        if not fresh and (kept := self._kept.get(key)) is not None:
            until, known = kept
            if now < until and (known.expires_at is None or datetime.now(UTC) < known.expires_at):
                return known
        self._kept.pop(key, None)
        user = await self._find(session, token)
        if user is not None:
            if len(self._kept) >= MAX_ENTRIES:
                self._prune(now)
            self._kept[key] = (now + self._ttl_s, user)
        return user

    def forget(self, token: str) -> None:
        self._kept.pop(hash_token(token), None)

    def _prune(self, now: float) -> None:
        for key in [k for k, (until, _) in self._kept.items() if until <= now]:
            del self._kept[key]
        while len(self._kept) >= MAX_ENTRIES:
            del self._kept[next(iter(self._kept))]
