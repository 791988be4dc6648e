"""Live call tracking: AMI events folded into call states (pure reducer in `tracker`), changed
states written to the calls table in small batches off the event path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from siaga112.callbacks.legs import token_of
from siaga112.calls.recorder import CallFacts, CallProgress
from siaga112.metrics import Metrics
from siaga112.telephony.ami_events import AmiEvent, ChannelCreated, parse_event
from siaga112.telephony.facts import facts_from_env
from siaga112.telephony.tracker import CallState, CallStatus, apply_event, call_key

log = logging.getLogger(__name__)

# A call whose progress fails this many times in a row for its own data (not because the
# database is away) is given up, logged and counted.
MAX_WRITE_ATTEMPTS = 5

# How often finished calls are looked for to be forgotten (CallTracker._evict).
EVICT_EVERY_S = 1.0

# Channel events (lower-case names) that say something only about the channel they name.
_CHANNEL_EVENTS = frozenset({"newchannel", "newstate", "hangup"})

# Writes progress; returns the uniqueids that had no call row.
WriteProgress = Callable[[list[CallProgress]], Awaitable[set[str]]]
# Creates the row (and incident) for a call the AGI step never reported.
CreateCall = Callable[[CallFacts, datetime], Awaitable[None]]


def progress_of(state: CallState) -> CallProgress:
    outcome: str | None = None
    if state.state is CallStatus.ABANDONED:
        outcome = "abandoned"
    elif state.operator is not None and state.answered_at is not None:
        outcome = "answered"
    elif state.state is CallStatus.ENDED:
        outcome = "ended_before_answer"
    return CallProgress(
        uniqueid=state.uniqueid,
        state=state.state.value,
        enqueued_at=state.enqueued_at,
        ringing_at=state.ringing_at,
        answered_at=state.answered_at,
        ended_at=state.ended_at,
        queue=state.queue,
        operator=state.operator,
        hangup_cause=state.hangup_cause_txt,
        outcome=outcome,
        overflowed_at=state.overflowed_at,
    )


class CallTracker:
    def __init__(
        self,
        *,
        write_progress: WriteProgress,
        create_call: CreateCall,
        metrics: Metrics,
        flush_interval_s: float = 0.05,
        keep_terminal_s: float = 120.0,
        retry_delay_s: float = 0.5,
    ) -> None:
        self._write = write_progress
        self._create = create_call
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        self.keep_terminal_s = keep_terminal_s
        self.states: dict[str, CallState] = {}
        self._callers: dict[str, tuple[str, str]] = {}
        self._dirty: dict[str, CallState] = {}
        self._terminal_since: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Consecutive failed writes per call (see _write_one_by_one).
        self._failures: dict[str, int] = {}
        # When _evict last walked the states (monotonic s).
        self._evicted_at = 0.0
        self.retry_delay_s = retry_delay_s

    # -- event path (synchronous, cheap) ---------------------------------------------------
    def feed(self, event: AmiEvent) -> None:
        key = call_key(event)
        if key is None:
            return
        if isinstance(event, ChannelCreated) and key == getattr(event, "linkedid", None):
            self._callers[key] = (event.caller_num, event.caller_name)
        new, changed = apply_event(self.states.get(key), event)
        if not changed or new is None:
            return
        self.states[key] = new
        # Only calls that reached the emergency queue are the centre's calls; other
        # originating legs (operator-to-operator, callbacks) are not written as 112 calls.
        if new.queue is not None or key in self._dirty:
            self._dirty[key] = new
            self._wake.set()
        if new.state.is_terminal:
            self._terminal_since.setdefault(key, time.monotonic())

    def ignores(self, message: Mapping[str, object]) -> bool:
        """True for a raw AMI message that ``feed`` (and the callback tracker) would drop after
        parsing it: a channel event (Newchannel, Newstate, Hangup) of a leg another channel
        started -- an operator's leg, a Local member's halves -- that no tracked call is keyed
        by and that is no callback leg. Every queued call brings several; skipping them before
        parsing changes nothing else (``apply_event`` opens a call only for an originating
        leg or a queue event). Anything unexpected is not ignored."""
        name = message.get("Event")
        if not isinstance(name, str) or name.lower() not in _CHANNEL_EVENTS:
            return False
        uniqueid, linkedid = message.get("Uniqueid"), message.get("Linkedid")
        if not isinstance(uniqueid, str) or not isinstance(linkedid, str):
            return False
        uniqueid, linkedid = uniqueid.strip(), linkedid.strip()
        return (
            bool(uniqueid)
            and bool(linkedid)
            and linkedid != uniqueid
            and uniqueid not in self.states
            and token_of(uniqueid) is None
        )

    def feed_raw(self, message: Mapping[str, str]) -> None:
        event = parse_event(message, received_at=datetime.now(UTC))
        if event is not None:
            self.feed(event)

    # -- writer ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._writer_ended)

    def _writer_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.metrics.inc("call_tracker_crashes")
            log.error("call progress writer stopped", exc_info=task.exception())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_interval_s)  # let a burst of events coalesce
            await self.flush()
            self._evict()

    async def flush(self) -> None:
        if not self._dirty:
            return
        batch, self._dirty = self._dirty, {}
        try:
            await self._write_batch(batch)
            self.metrics.inc("call_progress_writes", len(batch))
            for key in batch:
                self._failures.pop(key, None)
        except Exception as exc:
            self.metrics.inc("call_progress_write_failures")
            if _transient(exc):
                # A deadlock with another writer of the same rows, or the database away.
                log.warning("writing call progress failed (%s); retrying call by call", exc)
            else:
                log.exception("writing call progress failed; retrying call by call")
            await self._write_one_by_one(batch)

    async def _write_batch(self, batch: Mapping[str, CallState]) -> None:
        missing = await self._write([progress_of(s) for s in batch.values()])
        for uniqueid in missing:
            state = batch[uniqueid]
            number, name = self._callers.get(uniqueid, ("", ""))
            await self._create(_facts_from_ami(state, number, name), state.offered_at)
            self.metrics.inc("calls_created_from_ami")
        if missing:
            await self._write([progress_of(batch[u]) for u in missing])

    async def _write_one_by_one(self, batch: Mapping[str, CallState]) -> None:
        """After a failed batch: one call that cannot be written (bad data) must not hold up
        every other call's progress. A call that keeps failing is given up, logged and
        counted; Asterisk's own record (reconciliation) still gives it its row."""
        retry = False
        for key, state in batch.items():
            try:
                await self._write_batch({key: state})
                self._failures.pop(key, None)
                self.metrics.inc("call_progress_writes")
            except Exception as exc:
                if _transient(exc):
                    # The database is away, not this call's fault: keep it, try again later.
                    self._dirty.setdefault(key, state)
                    retry = True
                    continue
                failures = self._failures.get(key, 0) + 1
                if failures >= MAX_WRITE_ATTEMPTS:
                    self._failures.pop(key, None)
                    self.metrics.inc("call_progress_rejected")
                    log.error(
                        "call %s: progress not written after %d attempts; given up "
                        "(reconciliation from the CDR will record the call)",
                        key,
                        failures,
                        exc_info=True,
                    )
                    continue
                self._failures[key] = failures
                self._dirty.setdefault(key, state)
                retry = True
        if retry:
            # The database may be briefly away: back off before the next attempt.
            await asyncio.sleep(self.retry_delay_s)
            self._wake.set()

    def _evict(self) -> None:
        now = time.monotonic()
        # Every flush (up to 20 a second) walked every call of the last two minutes, thousands
        # under a surge, for calls that are only due after keep_terminal_s (bench/surge's
        # profile of the events worker, issue 13): once a second is enough.
        if now - self._evicted_at < EVICT_EVERY_S:
            return
        self._evicted_at = now
        for key, since in list(self._terminal_since.items()):
            if now - since > self.keep_terminal_s and key not in self._dirty:
                self.states.pop(key, None)
                self._callers.pop(key, None)
                del self._terminal_since[key]
        # Originating legs that never reached the queue: forget them after a while too.
        horizon = datetime.now(UTC) - timedelta(hours=2)
        for key, state in list(self.states.items()):
            if state.queue is None and state.offered_at < horizon:
                self.states.pop(key, None)
                self._callers.pop(key, None)


# deadlock_detected, serialization_failure, lock_not_available: another writer, not the data.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def _transient(exc: BaseException) -> bool:
    """A lost or refused connection, a timeout, a deadlock with another writer: the database
    or the moment, not the data; writing the same again later succeeds."""
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    return exc.connection_invalidated or _sqlstate(exc) in _TRANSIENT_SQLSTATES


def _sqlstate(exc: DBAPIError) -> str | None:
    # asyncpg's error (behind SQLAlchemy's adapter) carries the SQLSTATE as `sqlstate`.
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _facts_from_ami(state: CallState, number: str, name: str) -> CallFacts:
    """What the AMI knows of a call the AGI step missed; reconciliation adds headers later."""
    return facts_from_env(
        {
            "agi_uniqueid": state.uniqueid,
            "agi_linkedid": state.linkedid,
            "agi_channel": state.channel,
            "agi_callerid": number or "unknown",
            "agi_calleridname": name or "unknown",
        }
    )
