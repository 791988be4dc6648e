"""The AMI connection (panoramisk): login, reconnect with backoff, events handed on as typed
domain events, and a resynchronisation after every (re)login, since events that arrive while
disconnected are lost."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from panoramisk import Manager
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from siaga112.metrics import Metrics
from siaga112.telephony.ami_events import AmiEvent, Malformed, parse_event

log = logging.getLogger(__name__)

OnEvent = Callable[[AmiEvent], None]
OnLogin = Callable[[], Awaitable[None]]


class _BackoffManager(Manager):  # type: ignore[misc]
    """panoramisk retries a failed connect after a fixed delay; this doubles it up to a cap
    and resets it after a successful login."""

    min_delay: float = 0.5
    max_delay: float = 15.0
    reconnect_timeout: float

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        failed = not f.cancelled() and f.exception() is not None
        if failed:
            self.reconnect_timeout = min(
                self.max_delay, max(self.min_delay, self.reconnect_timeout * 2)
            )
        super().connection_made(f)


class _EventsProtocol(AMIProtocol):  # type: ignore[misc]
    """panoramisk's protocol, with a shorter way for the events siaga112 follows: a message
    that starts with ``Event:``, answers no action (no ``ActionID``) and only the catch-all
    handler takes goes straight to it as a plain dict of its headers. panoramisk would build a
    case-insensitive ``Message`` of it, look it up among the pending actions and match it
    against every handler's pattern: together about a seventh of the events worker's CPU
    (bench/surge's py-spy profile, issue 13). Everything else -- responses, the events of a
    list an action asked for, events with a handler of panoramisk's own (FullyBooted,
    Shutdown), a header given twice, the login banner -- takes panoramisk's way unchanged."""

    def data_received(self, data: bytes) -> None:
        handler = getattr(self.factory, "plain_event", None)
        if handler is None or self.version is None or getattr(self.factory, "save_stream", None):
            super().data_received(data)
            return
        special = _special_events(self.factory)
        if special is None:
            super().data_received(data)
            return
        text = data.decode(getattr(self, "encoding", "ascii"), "ignore")
        if self.queue:
            text = self.queue.popleft() + text
        blocks = text.split("\r\n\r\n")
        self.queue.append(blocks.pop(-1))
        for raw in blocks:
            block = raw.strip()
            fields = _plain_event(block, special)
            if fields is not None:
                handler(fields)
                continue
            message = Message.from_line(block)
            if message is not None:
                self.handle_message(message)


def _special_events(manager: Any) -> frozenset[str] | None:
    """Event names (lower case) a handler other than the catch-all takes; None when a handler
    has a pattern (then every event takes panoramisk's way)."""
    names = []
    for pattern in getattr(manager, "callbacks", {}):
        if pattern == "*":
            continue
        if any(c in pattern for c in "*?["):
            return None
        names.append(pattern.lower())
    return frozenset(names) | {"shutdown"}


def _plain_event(block: str, special: frozenset[str]) -> dict[str, str] | None:
    """The headers of an event for the catch-all handler alone, or None (panoramisk's way)."""
    if not block.startswith("Event: ") or "\r\nActionID: " in block:
        return None
    fields: dict[str, str] = {}
    for line in block.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        if key in fields or key.lower() in _QUOTED:
            return None
        fields[key] = value
    if fields["Event"].lower() in special:
        return None
    return fields


# Headers panoramisk's Message unquotes.
_QUOTED = frozenset(Message.quoted_keys)


class AmiLink:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        secret: str,
        on_event: OnEvent,
        on_login: OnLogin,
        metrics: Metrics,
        min_delay: float = 0.5,
        max_delay: float = 15.0,
        accept: Callable[[Mapping[str, Any]], bool] | None = None,
        on_disconnect: Callable[[], None] | None = None,
    ) -> None:
        self._on_event = on_event
        # Told when the session is lost (inline in panoramisk's protocol: must not block).
        self._on_disconnect_cb = on_disconnect
        # Asked of the raw message before it is parsed: an event no handler would use costs
        # no parsing, a large share of the events worker's time (bench/README, issue 13).
        self._accept = accept
        self._on_login_cb = on_login
        self.metrics = metrics
        self.logged_in_at: float | None = None
        self._resyncs: set[asyncio.Task[None]] = set()
        self._malformed: dict[str, int] = {}
        self._manager = _BackoffManager(
            host=host,
            port=port,
            username=username,
            secret=secret,
            ping_delay=5,
            ping_interval=5,
            reconnect_timeout=1,
            on_login=self._on_login,
            on_disconnect=self._on_disconnect,
            on_connect=lambda _m: None,
            # panoramisk re-sends, after a reconnect, actions that got no answer: an Originate
            # re-sent seconds later would ring an operator who gave up on it. Forget it; the
            # attempt then runs out of time and is closed as failed.
            forgetable_actions=("ping", "login", "originate"),
            protocol_factory=_EventsProtocol,
        )
        self._manager.min_delay = min_delay
        self._manager.max_delay = max_delay
        self._manager.reconnect_timeout = min_delay
        self._manager.register_event("*", self._dispatch)
        # The catch-all handler's events, as plain dicts (_EventsProtocol).
        self._manager.plain_event = lambda fields: self._dispatch(self._manager, fields)

    @property
    def ready(self) -> bool:
        return self.logged_in_at is not None and bool(self._manager.authenticated)

    async def start(self) -> None:
        self._manager.loop = asyncio.get_running_loop()
        self._manager.connect()

    async def stop(self) -> None:
        for task in list(self._resyncs):
            task.cancel()
        # panoramisk would reconnect after connection_lost; stop it from doing so.
        self._manager.reconnect_timeout = 10**9
        self._manager.close()
        self.logged_in_at = None

    async def send_action(
        self, action: Mapping[str, str], *, within_s: float = 5.0
    ) -> Mapping[str, str]:
        """Sends an action with a single answer (Response: Success/Error).

        ``as_list=False``: otherwise panoramisk guesses from the message, takes QueueAdd's
        "Added interface to queue" for the start of a list and waits forever."""
        result = await asyncio.wait_for(
            self._manager.send_action(dict(action), as_list=False), within_s
        )
        if isinstance(result, list):
            result = result[-1] if result else {}
        return dict(result)

    async def send_list(
        self, action: Mapping[str, str], *, within_s: float = 10.0
    ) -> list[Mapping[str, str]]:
        """Sends an action whose answer is a list of events ending in ...Complete."""
        result = await asyncio.wait_for(
            self._manager.send_action(dict(action), as_list=True), within_s
        )
        items = result if isinstance(result, list) else [result]
        return [dict(m) for m in items]

    def _dispatch(self, _manager: Manager, message: Mapping[str, Any]) -> None:
        # Runs inline in panoramisk's protocol: must never raise, never block.
        try:
            if self._accept is not None and not self._accept(message):
                self.metrics.inc("ami_events_skipped")
                return
            event = parse_event(message, received_at=datetime.now(UTC))
            if event is None:
                return
            if isinstance(event, Malformed):
                self.metrics.inc("ami_events_malformed")
                seen = self._malformed[event.event_name] = (
                    self._malformed.get(event.event_name, 0) + 1
                )
                # 1st, 10th, 100th ...: a surge must not turn this into one log line per call.
                if math.log10(seen).is_integer():
                    log.warning(
                        "malformed AMI %s event (%d so far): %s",
                        event.event_name,
                        seen,
                        event.reason,
                    )
                return
            self.metrics.inc("ami_events")
            self._on_event(event)
        except Exception:
            self.metrics.inc("ami_event_failures")
            log.exception("AMI event handling failed")

    def _on_login(self, _manager: Manager) -> None:
        self.logged_in_at = time.monotonic()
        self._manager.reconnect_timeout = self._manager.min_delay
        self.metrics.inc("ami_logins")
        log.info("AMI logged in; resynchronising")
        task = asyncio.get_running_loop().create_task(self._resync())
        self._resyncs.add(task)
        task.add_done_callback(self._resyncs.discard)

    async def _resync(self) -> None:
        try:
            await self._on_login_cb()
        except Exception:
            self.metrics.inc("ami_resync_failures")
            log.exception("AMI resynchronisation failed")

    def _on_disconnect(self, _manager: Manager, exc: Exception | None) -> None:
        self.logged_in_at = None
        self.metrics.inc("ami_disconnects")
        log.warning("AMI connection lost (%s); reconnecting", exc)
        if self._on_disconnect_cb is not None:
            try:
                self._on_disconnect_cb()
            except Exception:
                log.exception("AMI disconnect handling failed")
