"""Operators' states from AMI queue member events: a pure reducer that keeps each operator's
state in the operators' queue and lets only real changes through (app_queue raises
QueueMemberStatus for every device state update of a member, often with nothing changed), and a
writer that stores them in small batches off the event path.

The state is the one `GET /v1/operators` shows (``QueueMemberState.state``): offline (device
unavailable), ringing, in_call, paused, idle; and logged_out once the member left the queue.
Every member event carries the member's whole state, so each one is enough on its own.
DeviceStateChange is not used: app_queue already turns a member's device state change into a
QueueMemberStatus, and DeviceStateChange would bring every device of the PBX (carrier legs
included) through the AMI filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from siaga112.callcontrol.protocol import QueueMemberState, device_name
from siaga112.metrics import Metrics
from siaga112.operators.live import (
    OperatorSnapshot,
    OperatorState,
    OperatorStateChange,
)
from siaga112.telephony.ami_events import QueueMemberChanged, operator_from_interface

log = logging.getLogger(__name__)

Pending = OperatorStateChange | OperatorSnapshot
WriteStates = Callable[[list[Pending]], Awaitable[int]]


class OperatorStates:
    """Each operator's last state in one queue; ``apply`` returns a change only when the state
    (or the pause reason of a paused operator) differs from the last one."""

    def __init__(self, *, queue: str) -> None:
        self.queue = queue
        self.current: dict[str, tuple[OperatorState, str | None]] = {}

    def apply(self, event: QueueMemberChanged) -> OperatorStateChange | None:
        if event.queue != self.queue or not event.operator:
            return None
        if event.change == "removed":
            return self._set(event.operator, "logged_out", None, event.at, resync=False)
        member = QueueMemberState(
            queue=event.queue,
            interface=event.interface,
            name=event.member_name,
            device=device_name(event.status),
            paused=event.paused,
            pause_reason=event.pause_reason,
            in_call=event.in_call,
        )
        return self._set(event.operator, member.state, event.pause_reason, event.at, resync=False)

    def apply_snapshot(
        self, members: Sequence[QueueMemberState], *, at: datetime
    ) -> OperatorSnapshot:
        """The queue's members as QueueStatus listed them (after every AMI login): changes for
        those that differ, and logged_out for every operator no longer listed."""
        listed: dict[str, QueueMemberState] = {}
        for member in members:
            extension = operator_from_interface(member.interface)
            if member.queue == self.queue and extension:
                listed[extension] = member
        changes: list[OperatorStateChange] = []
        for extension, member in listed.items():
            change = self._set(extension, member.state, member.pause_reason, at, resync=True)
            if change is not None:
                changes.append(change)
        for extension in sorted(set(self.current) - set(listed)):
            change = self._set(extension, "logged_out", None, at, resync=True)
            if change is not None:
                changes.append(change)
        return OperatorSnapshot(
            queue=self.queue, at=at, changes=tuple(changes), present=frozenset(listed)
        )

    def _set(
        self,
        extension: str,
        state: OperatorState,
        pause_reason: str | None,
        at: datetime,
        *,
        resync: bool,
    ) -> OperatorStateChange | None:
        value = (state, (pause_reason or None) if state == "paused" else None)
        if self.current.get(extension) == value:
            return None
        self.current[extension] = value
        return OperatorStateChange(
            extension=extension,
            state=state,
            pause_reason=value[1],
            at=at,
            queue=self.queue,
            resync=resync,
        )


class OperatorStateWriter:
    """Stores changes in order, a batch per transaction, never on the AMI event path."""

    def __init__(
        self,
        *,
        write: WriteStates,
        metrics: Metrics,
        flush_interval_s: float = 0.01,
        max_pending: int = 10_000,
    ) -> None:
        self._write = write
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        self._pending: deque[Pending] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def push(self, item: Pending) -> None:
        if len(self._pending) == self._pending.maxlen:
            # The oldest goes; the next resynchronisation stores the current states anyway.
            self.metrics.inc("operator_state_changes_dropped")
        self._pending.append(item)
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self.flush_interval_s)  # a ringall rings every member at once
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch = list(self._pending)
        self._pending.clear()
        try:
            written = await self._write(batch)
        except Exception:
            self.metrics.inc("operator_state_write_failures")
            log.exception("writing operator states failed; will retry")
            self._pending.extendleft(reversed(batch))
            await asyncio.sleep(0.5)
            self._wake.set()
            return
        self.metrics.inc("operator_state_events", written)
