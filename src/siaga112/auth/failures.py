"""Failed authentications: counted, logged without the key, and limited per source address.

The limit is kept in memory, per process: behind several API processes an attacker gets the
limit once per process, and a restart forgets it. That bounds guessing to a few tries a
second per source, which against 256-bit random keys is ample; a shared limit (or the
reverse proxy's) is the place for more."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class AuthFailureLimiter:
    """Sliding window of failures per source address. Over `max_failures` within `window_s`
    the source is refused (even with a good key) until its oldest failure leaves the window."""

    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        max_sources: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_sources = max_sources
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, source: str) -> deque[float] | None:
        seen = self._failures.get(source)
        if seen is None:
            return None
        horizon = self._clock() - self.window_s
        while seen and seen[0] <= horizon:
            seen.popleft()
        if not seen:
            del self._failures[source]
            return None
        return seen

    def retry_after(self, source: str) -> float | None:
        """Seconds until `source` may try again, or None when it is not limited."""
        seen = self._recent(source)
        if seen is None or len(seen) < self.max_failures:
            return None
        return max(0.0, seen[0] + self.window_s - self._clock())

    def failed(self, source: str) -> None:
        if source not in self._failures and len(self._failures) >= self._max_sources:
            # Bounded memory under a spread-out attack: forget the oldest source.
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(source, deque()).append(self._clock())
