"""The FastAGI server: Asterisk's `AGI(agi://host:4573/incoming,...)` step.

It enriches, it never gates: whatever happens here, the handler answers within its budget and
the dialplan goes on to the queue. The request header is read here rather than by panoramisk's
`Application.handler`, which reads 100 bytes at a time and spins forever on a connection that
closes before the blank line; panoramisk's `Request` still sends the AGI commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime

from panoramisk.fast_agi import Request

from siaga112.calls.recorder import CallFacts, RecordedCall
from siaga112.metrics import Metrics
from siaga112.telephony.agi_request import parse_incoming_call
from siaga112.telephony.facts import facts_from

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT_S = 2.0

# Stores a call and returns its ids; the AGI server knows nothing of the database.
RecordCall = Callable[[CallFacts, datetime], Coroutine[None, None, RecordedCall]]


def parse_header_block(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").split("\n"):
        key, sep, value = line.partition(": ")
        if sep and key.startswith("agi_"):
            headers[key] = value.rstrip("\r")
    return headers


class AgiServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        budget_s: float,
        record_call: RecordCall,
        metrics: Metrics,
        low_queue: str = "emergency-low",
        repeat_priority: int = 10,
        allow_from: Sequence[str] = ("127.0.0.1/32", "::1/128"),
        secret: str,
    ) -> None:
        # Only the PBX talks AGI, and it says so with the dialplan's secret: anyone else who
        # reaches the port could open fake 112 calls with any number and location.
        self.allow_from = [ipaddress.ip_network(n, strict=False) for n in allow_from]
        self._key = secret.encode()
        self.low_queue = low_queue
        self.repeat_priority = repeat_priority
        self.host = host
        self.port = port
        # The server's own share of the dialplan's budget: what remains is for the network
        # and Asterisk, so the channel never hits the dialplan's absolute timeout because of us.
        self.write_budget_s = max(0.05, budget_s * 0.6)
        self.record_call = record_call
        self.metrics = metrics
        self._server: asyncio.Server | None = None
        # Writes that outlived their budget go on in the background; kept referenced so they
        # are neither garbage-collected nor lost at shutdown.
        self._pending: set[asyncio.Task[RecordedCall]] = set()
        self._rejections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, limit=MAX_HEADER_BYTES, backlog=1024
        )
        log.info("FastAGI listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._pending:
            await asyncio.wait(self._pending, timeout=10)

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        started = time.perf_counter()
        accepted_at = time.time()
        try:
            if not self._allowed(writer.get_extra_info("peername")):
                self.metrics.inc("agi_rejected_source")
                self._log_rejection("from a source outside agi.allow_from")
                return
            try:
                raw = await asyncio.wait_for(reader.readuntil(b"\n\n"), HEADER_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                self.metrics.inc("agi_rejected")
                log.warning("AGI request rejected: %s", type(exc).__name__)
                return
            headers = parse_header_block(raw)
            script, _, query = headers.get("agi_network_script", "").partition("?")
            if script != "incoming":
                self.metrics.inc("agi_rejected")
                log.warning("AGI request for unknown script %r rejected", script[:80])
                return
            params = urllib.parse.parse_qs(query)
            key = params.get("key", [""])[0].encode()
            if not hmac.compare_digest(key, self._key):
                self.metrics.inc("agi_rejected_secret")
                self._log_rejection("without the dialplan's secret")
                return
            tried_at = _dialplan_time(params.get("t", [""])[0], accepted_at)
            if tried_at is not None:
                # Asterisk's connect and the kernel's accept queue: time the handler never sees.
                self.metrics.observe("agi_wait", accepted_at - tried_at)
            await self.incoming(Request(None, headers, reader, writer))
            self.metrics.observe("agi_handling", time.perf_counter() - started)
            if tried_at is not None:
                self.metrics.observe("agi_total", time.time() - tried_at)
        except Exception:
            self.metrics.inc("agi_failed")
            log.exception("AGI request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _allowed(self, peer: object) -> bool:
        if not isinstance(peer, tuple) or not peer:
            return False
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.allow_from)

    def _log_rejection(self, why: str) -> None:
        # A flood of them must not flood the log: the 1st, 10th, 100th ... are written.
        self._rejections += 1
        if self._rejections & (self._rejections - 1) == 0 or self._rejections % 1000 == 0:
            log.warning("AGI request %s refused (%d so far)", why, self._rejections)

    async def incoming(self, request: Request) -> None:
        self.metrics.inc("agi_requests")
        headers: Mapping[str, str] = request.headers
        call = parse_incoming_call(headers)
        for problem in call.problems:
            self.metrics.inc("agi_header_problems")
            log.info("call %s: %s", call.uniqueid, problem)
        if not call.uniqueid:
            self.metrics.inc("agi_rejected")
            log.warning("AGI request without agi_uniqueid: nothing to record")
            return
        if not call.caller_id_available:
            self.metrics.inc("calls_without_caller_id")
        task = asyncio.create_task(self.record_call(facts_from(call), datetime.now(UTC)))
        self._pending.add(task)
        task.add_done_callback(self._write_done)
        try:
            recorded = await asyncio.wait_for(asyncio.shield(task), self.write_budget_s)
        except TimeoutError:
            self.metrics.inc("agi_over_budget")
            log.warning(
                "call %s: database slower than %.0f ms; call goes on without an "
                "incident id (the write continues)",
                call.uniqueid,
                self.write_budget_s * 1000,
            )
            return
        except Exception:
            # Counted and logged by _write_done; the call goes on to the queue regardless.
            return
        await request.send_command(f"SET VARIABLE SIAGA112_INCIDENT_ID {recorded.incident_id}")
        # Extra round trips only for the few calls that need them.
        if recorded.flagged:
            # Never blocked: the call is answered from the low-priority queue, after a notice.
            self.metrics.inc("calls_from_flagged_numbers")
            await request.send_command(f"SET VARIABLE SIAGA112_QUEUE {self.low_queue}")
            await request.send_command("SET VARIABLE SIAGA112_FLAGGED 1")
        elif recorded.repeat_caller:
            self.metrics.inc("calls_from_repeat_callers")
            await request.send_command(f"SET VARIABLE SIAGA112_PRIORITY {self.repeat_priority}")

    def _write_done(self, task: asyncio.Task[RecordedCall]) -> None:
        self._pending.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.metrics.inc("agi_write_failed")
            log.error("recording a call failed: %s", exc, exc_info=exc)
        else:
            self.metrics.inc("agi_calls_recorded")


# A dialplan time further from the server's clock than this is not believed (clocks of separate
# hosts out of step, or a value that is not a time): the wait is then not observed.
MAX_CLOCK_GAP_S = 60.0


def _dialplan_time(value: str, now: float) -> float | None:
    """The Unix time the dialplan put in the AGI URL (``t``), or None when absent or not
    believable (more than MAX_CLOCK_GAP_S from ``now``; a small negative gap is clock skew
    between hosts and counts as no wait)."""
    try:
        t = float(value)
    except ValueError:
        return None
    if not abs(now - t) <= MAX_CLOCK_GAP_S:  # also false for nan and inf
        return None
    return min(t, now)
