"""The telephony side of `siaga112 serve`: FastAGI server, AMI link, call tracker and CDR
reconciliation, wired to the database. Built by the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from siaga112.auth.service import system_actor
from siaga112.callcontrol.protocol import CallControl
from siaga112.calls.lost import end_calls_of_lost_node
from siaga112.calls.recorder import (
    CallFacts,
    CallProgress,
    Executor,
    RecordedCall,
    apply_progress,
    record_incoming,
)
from siaga112.config import PbxNode, Settings
from siaga112.db.errors import unreachable as db_unreachable
from siaga112.locations.service import CallLocationJob, aml_number
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics
from siaga112.operators.live import OperatorSnapshot, record_operator_states
from siaga112.operators.service import QueueTarget, reapply_sessions
from siaga112.runtime.callback_tracking import CallbackTracker
from siaga112.runtime.reconcile import CdrReconciler, record_start_of
from siaga112.telephony.agi_server import AgiServer
from siaga112.telephony.ami_call_control import AmiCallControl, parse_queue_members
from siaga112.telephony.ami_client import AmiLink
from siaga112.telephony.ami_events import AmiEvent, FullyBooted, QueueMemberChanged
from siaga112.telephony.node_control import NodeCallControl
from siaga112.telephony.operator_states import OperatorStates, OperatorStateWriter, Pending
from siaga112.telephony.resync import (
    connected_caller_events,
    connected_callers,
    waiting_caller_event,
)
from siaga112.telephony.tracking import CallTracker

log = logging.getLogger(__name__)

RECONCILE_EVERY_S = 30.0
# After a gap in what this process saw (it took a node's lease, its AMI session logged in again,
# the database came back): calls cut during the gap end in the CDR file over the next moments,
# so the file is read this often for a while instead of every RECONCILE_EVERY_S. Each pass is
# a stat of the file when nothing was appended.
CATCH_UP_EVERY_S = 1.0
CATCH_UP_FOR_S = 120.0
NODE_ACTOR = system_actor("node-watch")
# Inline location derivation: calls younger than this are left to their own task by the sweep.
INLINE_SWEEP_GRACE = timedelta(seconds=60)


# What one process does of the telephony side:
# - "all": everything below, in one event loop (inline; the tests' stack);
# - "agi": the FastAGI server, and an AMI link for actions only (events switched off for the
#   session): `siaga112 serve` when the events are followed elsewhere;
# - "events": the AMI event stream (call tracker, callbacks, operator states, resync after
#   every login, putting operators back after an Asterisk restart) and reconciliation from the
#   CDR file: `siaga112 worker`. Parsing a few dozen AMI events per call took half of serve's
#   core at 100 calls/s (bench/surge), time the AGI server needs for the calls themselves;
# - "control": only the AMI link for actions, events off (hang-up, transfer, callbacks, queue
#   sessions): `siaga112 serve --api-only --call-control`, an API and console instance of
#   its own, so that the consoles' requests never queue behind (or in front of) AGI requests.
TelephonyRole = Literal["all", "agi", "events", "control"]


class Telephony:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        role: TelephonyRole = "all",
        node: PbxNode | None = None,
    ) -> None:
        self.settings = settings
        # The node whose events and CDR file this process follows (role events/all); actions
        # reach every node (role agi/all).
        self.node = node if node is not None else settings.pbx_nodes[0]
        self.role = role
        self.follows_events = role in ("all", "events")
        self.answers_agi = role in ("all", "agi")
        self.sessionmaker = sessionmaker
        # For single statements (the AGI step's, a batch of call progress): see _one_statement.
        self._autocommit: tuple[AsyncEngine, AsyncEngine] | None = None
        self.metrics = metrics
        self.agi = AgiServer(
            host=settings.agi.host,
            port=settings.agi.port,
            budget_s=settings.agi.budget_ms / 1000,
            record_call=self._record_call,
            metrics=metrics,
            low_queue=settings.pbx.low_queue_name,
            repeat_priority=settings.agi.repeat_priority,
            allow_from=settings.agi.allow_from,
            secret=settings.agi_secret.get_secret_value(),
        )
        self.tracker = CallTracker(
            write_progress=self._write_progress, create_call=self._create_call, metrics=metrics
        )
        self.callbacks = CallbackTracker(sessionmaker=sessionmaker, metrics=metrics)
        self.operator_states = OperatorStates(queue=settings.pbx.queue_name)
        self.operator_writer = OperatorStateWriter(
            write=self._write_operator_states, metrics=metrics
        )
        self.reconciler = CdrReconciler(
            path=self.node.cdr_file,
            sessionmaker=sessionmaker,
            metrics=metrics,
            # The one node of a deployment without nodes keeps its read position's old name.
            name="asterisk-cdr"
            if self.node.systemname is None
            else f"asterisk-cdr:{self.node.name}",
            node=self.node.name,
        )
        # One AMI session per node this process acts on: the followed node's carries its
        # events; the others (role agi/all with several nodes) are actions-only.
        # A call-control instance (role "control") acts on every node too: a hang-up for a
        # call on node B sent to node A's link could cut another call of the same channel name.
        acts_on = settings.pbx_nodes if self.answers_agi or role == "control" else [self.node]
        self._other_nodes = any(n.name != self.node.name for n in settings.pbx_nodes)
        if self.node.name not in {n.name for n in acts_on}:
            acts_on = [self.node, *acts_on]
        self.links: dict[str, AmiLink] = {
            n.name: self._link(n, events=self.follows_events and n.name == self.node.name)
            for n in acts_on
        }
        self.ami = self.links[self.node.name]
        self._controls: dict[str, CallControl] = {
            name: AmiCallControl(send_action=link.send_action, send_list=link.send_list)
            for name, link in self.links.items()
        }
        self.control: CallControl = (
            self._controls[self.node.name]
            if len(self._controls) == 1
            else NodeCallControl(controls=self._controls, is_up=lambda name: self.links[name].ready)
        )
        self._periodic: asyncio.Task[None] | None = None
        # Callers' locations beside the AGI server only when configured so; by default a
        # process of its own derives them (siaga112.locations.worker).
        self.locations: LocationWorker | None = (
            LocationWorker(settings=settings, sessionmaker=sessionmaker, metrics=metrics)
            if settings.locations.derive_in == "inline" and self.answers_agi
            else None
        )
        self._sweeps: set[asyncio.Task[None]] = set()
        self._reapplying: set[asyncio.Task[None]] = set()
        # The followed node's loss (siaga112.calls.lost): since when its AMI session is down,
        # whether that outage was already taken as the node's loss, and when the Asterisk
        # process now running started (FullyBooted's Uptime).
        self._down_since: datetime | None = None
        self._loss_handled = False
        self._booted_at: datetime | None = None
        self._watch: asyncio.Task[None] | None = None
        # Reconciliation's pace (see CATCH_UP_EVERY_S): fast until this monotonic time, and
        # woken early by catch_up(); whether the database failed a write since the last one
        # that went through.
        self._catch_up_until = 0.0
        self._reconcile_now = asyncio.Event()
        self._database_failed = False
        self._reconcile_failures = 0

    async def start(self) -> None:
        if self.follows_events:
            await self.tracker.start()
            await self.callbacks.start()
            await self.callbacks.sweep()
            await self.operator_writer.start()
            # What Asterisk recorded while siaga112 was down, before new calls come in; never
            # what it recorded before this database's record started.
            if self.reconciler.not_before is None:
                async with self.sessionmaker() as session:
                    self.reconciler.not_before = self.settings.pbx.reconcile_from or (
                        await record_start_of(session)
                    )
            try:
                await self.reconciler.run_once()
            except Exception as exc:
                self.metrics.inc("reconcile_failures")
                self._database_failed = self._database_failed or db_unreachable(exc)
                log.exception("reconciliation at start failed; will retry")
            # Taking a node's lease (or starting): calls cut while nobody followed the node
            # are still ending.
            self.catch_up("following the node")
        if self.answers_agi:
            # In the background: a sweep that fetches locations by reference must not hold up
            # the AGI server's start.
            self._kick_sweep()
            await self.agi.start()
        for link in self.links.values():
            await link.start()
        self._periodic = asyncio.get_running_loop().create_task(self._reconcile_forever())
        if self.follows_events:
            self._watch = asyncio.get_running_loop().create_task(self._watch_node_forever())

    def _link(self, node: PbxNode, *, events: bool) -> AmiLink:
        link: AmiLink

        async def events_off() -> None:
            """An actions-only AMI session: Asterisk sends it no events at all (the manager
            user's event filter is shared with the session that follows them). With several
            nodes, the node may have restarted with empty dynamic queues while this session
            was away, and its follower may be down too: put the logged-in operators back on it
            (idempotent). One node is always put right by its follower at FullyBooted."""
            await link.send_action({"Action": "Events", "EventMask": "off"})
            self.metrics.inc("ami_events_off")
            if len(self.settings.pbx_nodes) > 1:
                await self._reapply_sessions(node.name)

        link = AmiLink(
            host=node.ami_host,
            port=node.ami_port,
            username=self.settings.ami.username,
            secret=self.settings.ami_secret.get_secret_value(),
            on_event=self._on_event if events else _ignore,
            accept=lambda message: not self.tracker.ignores(message),
            on_login=self.resync if events else events_off,
            on_disconnect=self._followed_link_lost if events else None,
            metrics=self.metrics,
            min_delay=self.settings.ami.reconnect_min_s,
            max_delay=self.settings.ami.reconnect_max_s,
        )
        return link

    def _followed_link_lost(self) -> None:
        # The next session may be with another Asterisk process (restarted): its FullyBooted
        # says when that one started; the last one's time must not stand in for it.
        self._booted_at = None

    def _on_event(self, event: AmiEvent) -> None:
        if not self.follows_events:
            return
        if isinstance(event, QueueMemberChanged):
            change = self.operator_states.apply(event)
            if change is not None:
                self.operator_writer.push(change)
            return
        self.tracker.feed(event)
        self.callbacks.feed(event)
        if isinstance(event, FullyBooted):
            if event.uptime_s is not None:
                self._booted_at = event.received_at - timedelta(seconds=event.uptime_s)
            # Sent on every AMI login and when Asterisk has (re)started with empty dynamic
            # queues: put logged-in operators back (idempotent).
            task = asyncio.get_running_loop().create_task(self._reapply_sessions())
            self._reapplying.add(task)
            task.add_done_callback(self._reapplying.discard)

    async def _reapply_sessions(self, node: str | None = None) -> None:
        """Logged-in operators back in the queues of ``node`` (None: of every node this
        process acts on, or the followed node's alone for an events-only process)."""
        target = QueueTarget.for_settings(self.settings.pbx)
        control = self.control if node is None else self._controls[node]
        try:
            async with self.sessionmaker() as session:
                count = await reapply_sessions(session=session, control=control, target=target)
            if count:
                log.info("re-applied %d operator queue sessions on %s", count, node or "all")
            self.metrics.inc("operator_sessions_reapplied", count)
        except Exception:
            self.metrics.inc("operator_reapply_failures")
            log.exception("re-applying operator queue sessions failed")

    async def stop(self) -> None:
        sweeps = list(self._sweeps)
        for task in list(self._reapplying) + sweeps:
            task.cancel()
        # A sweep cut off leaves its calls unmarked: the next start's sweep does them.
        await asyncio.gather(*sweeps, return_exceptions=True)
        for own in (self._periodic, self._watch):
            if own is not None:
                own.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await own
        for link in self.links.values():
            await link.stop()
        await self.agi.stop()
        await self.tracker.stop()
        await self.callbacks.stop()
        await self.operator_writer.stop()
        if self.locations is not None:
            await self.locations.stop()

    async def resync(self) -> None:
        """After every AMI login: callers waiting in queues, callers talking to an operator and
        operators' states now (events missed while away are lost for good), then the CDR
        file."""
        now = datetime.now(UTC)
        entries = await self.ami.send_list({"Action": "QueueStatus"})
        alive = {_uniqueid(e) for e in entries}
        self.operator_writer.push(
            self.operator_states.apply_snapshot(parse_queue_members(entries), at=now)
        )
        for entry in entries:
            message = waiting_caller_event(entry, now=now)
            if message is not None:
                self.tracker.feed_raw(message)
        channels = await self.ami.send_list({"Action": "CoreShowChannels"})
        alive |= {_uniqueid(c) for c in channels}
        for caller in connected_callers(channels, now=now):
            for message in connected_caller_events(caller, now=now):
                self.tracker.feed_raw(message)
            self.metrics.inc("ami_resync_connected_callers")
        self.metrics.inc("ami_resyncs")
        await self.reconciler.run_once()
        if self._booted_at is not None:
            # After the CDR file, which ends properly what a clean restart hung up: what is
            # still open from before this Asterisk started can only have died with the last one.
            await self.end_lost_calls(
                before=self._booted_at, at=self._booted_at, reason="restarted", alive=alive
            )
        # Whole again: logged in, the live state read back, the CDR backlog written.
        self.metrics.inc("ami_resyncs_completed")
        # Events missed while the session was away: calls cut meanwhile end in the CDR file
        # over the next moments.
        self.catch_up("AMI logged in")
        self._kick_sweep()

    def catch_up(self, why: str) -> None:
        """Reconciles now, then every CATCH_UP_EVERY_S for CATCH_UP_FOR_S: after a gap in
        what this process saw, the calls it missed are written as soon as their CDR lines
        are, not at the next periodic pass."""
        if not self.follows_events:
            return
        self._catch_up_until = time.monotonic() + CATCH_UP_FOR_S
        self._reconcile_now.set()
        self.metrics.inc("reconcile_catch_ups")
        log.info("reconciling node %s at once and often for a while: %s", self.node.name, why)

    def _database_answered(self) -> None:
        """A write went through: after a failed one, the database is back (restarted,
        promoted, reachable again) and what Asterisk recorded meanwhile is read at once."""
        if self._database_failed:
            self._database_failed = False
            self.catch_up("the database is back")

    async def _reconcile_forever(self) -> None:
        next_periodic = time.monotonic() + RECONCILE_EVERY_S
        while True:
            now = time.monotonic()
            fast = self.follows_events and (now < self._catch_up_until or self._database_failed)
            wait = min(next_periodic - now, CATCH_UP_EVERY_S) if fast else next_periodic - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reconcile_now.wait(), max(wait, 0.0))
            self._reconcile_now.clear()
            periodic = time.monotonic() >= next_periodic
            if self.follows_events:
                try:
                    await self.reconciler.run_once()
                except Exception as exc:
                    self.metrics.inc("reconcile_failures")
                    self._reconcile_failures += 1
                    # Only a database that is away is retried every second until it is back;
                    # a failure of the file or of a line waits for the next pass as before.
                    # The 1st, 2nd, 4th, 8th ... failure in a row is logged with its trace.
                    away = db_unreachable(exc)
                    self._database_failed = self._database_failed or away
                    n = self._reconcile_failures
                    if n & (n - 1) == 0:
                        log.exception(
                            "reconciliation failed (%d in a row; %s)",
                            n,
                            "database away: retrying every second" if away else "next pass",
                        )
                else:
                    self._reconcile_failures = 0
                    self._database_answered()
            if periodic:
                next_periodic = time.monotonic() + RECONCILE_EVERY_S
                if self.follows_events:
                    await self.callbacks.sweep()
                await self._sweep_locations()

    async def _watch_node_forever(self) -> None:
        every = min(1.0, self.settings.pbx.node_lost_after_s / 4)
        while True:
            await asyncio.sleep(every)
            try:
                await self.check_node_lost(now=datetime.now(UTC))
            except Exception:
                self.metrics.inc("node_loss_failures")
                log.exception("ending the calls of lost node %s failed", self.node.name)

    async def check_node_lost(self, *, now: datetime) -> int:
        """Called every second or so: once the followed node's AMI session has been down
        ``pbx.node_lost_after_s``, its calls from before the outage are taken as lost (once
        per outage; a failure is retried at the next call). Returns the calls ended."""
        if self.ami.ready:
            self._down_since, self._loss_handled = None, False
            return 0
        if not self._other_nodes:
            # With one node, an unreachable AMI session is far likelier a network blip or a
            # slow reconnect than a dead PBX (whose calls then died with the whole centre): its
            # live calls must not be ended and offered for callback while operators talk to
            # them. The restart rule in resync() and the CDR file end them if it really died.
            return 0
        if self._down_since is None:
            self._down_since = now
        lost_after = timedelta(seconds=self.settings.pbx.node_lost_after_s)
        if self._loss_handled or now - self._down_since < lost_after:
            return 0
        self.metrics.inc("nodes_lost")
        log.warning(
            "node %s unreachable since %s: taking it as lost",
            self.node.name,
            self._down_since.isoformat(),
        )
        # Before the calls' write, not after it: should the node's AMI session come back
        # meanwhile, its resync's fresh snapshot must come after this one, not be undone by it.
        # Nobody is in a lost node's queue: its operators' states stop counting in the merge
        # across nodes (operators/live.py). Forgotten here too, so that the node's next login
        # stores every member it lists again.
        self.operator_states.current.clear()
        self.operator_writer.push(
            OperatorSnapshot(
                queue=self.settings.pbx.queue_name,
                at=self._down_since,
                changes=(),
                present=frozenset(),
                source="node_lost",
            )
        )
        ended = await self.end_lost_calls(
            before=self._down_since, at=self._down_since, reason="unreachable"
        )
        self._loss_handled = True
        return ended

    async def end_lost_calls(
        self, *, before: datetime, at: datetime, reason: str, alive: set[str] | None = None
    ) -> int:
        """Ends this node's open calls offered before ``before`` and not in ``alive`` as cut by
        the node's loss (siaga112.calls.lost); returns how many."""
        async with self.sessionmaker() as session:
            lost = await end_calls_of_lost_node(
                session=session,
                node=self.node.name,
                before=before,
                at=at,
                reason=reason,
                actor=NODE_ACTOR.label,
                alive=alive or (),
            )
            await session.commit()
        if lost.uniqueids:
            self.metrics.inc("calls_lost_with_node", len(lost.uniqueids))
            self.metrics.inc("calls_lost_with_node_for_callback", lost.with_number)
            log.warning(
                "node %s %s: ended %d open call(s) as node_lost (%d with a number to call back)",
                self.node.name,
                reason,
                len(lost.uniqueids),
                lost.with_number,
            )
        return len(lost.uniqueids)

    async def readiness_ami(self) -> tuple[bool, str]:
        if len(self.links) > 1:
            # Ready while any node can be acted on: one node down must not take the API's
            # call control (and this process's readiness) with it.
            up = [name for name, link in self.links.items() if link.ready]
            down = [name for name in self.links if name not in up]
            text = f"logged in to {', '.join(up) or 'no node'}"
            if down:
                text += f"; not connected to {', '.join(down)}"
            return bool(up), text
        if not self.ami.ready:
            return False, "not connected"
        return True, "logged in" if self.follows_events else "logged in (actions only)"

    async def readiness_agi(self) -> tuple[bool, str]:
        return (True, "listening") if self.agi.serving else (False, "not listening")

    # -- database side ---------------------------------------------------------------------
    async def _record_call(self, facts: CallFacts, at: datetime) -> RecordedCall:
        if facts.node is None and not self._other_nodes:
            # A single node without a systemname: the call is that node's.
            facts = replace(facts, node=self.node.name)
        # One self-contained statement: no BEGIN/COMMIT round trips on the AGI path.
        async with self._one_statement() as session:
            recorded = await record_incoming(
                session=session,
                facts=facts,
                at=at,
                repeat_window_min=self.settings.agi.repeat_window_min,
            )
        self._schedule_locations(recorded, facts, at)
        return recorded

    # -- caller location, off the AGI hot path -------------------------------------------------
    def _schedule_locations(self, recorded: RecordedCall, facts: CallFacts, at: datetime) -> None:
        if self.locations is None:
            return  # the location worker finds the call by itself
        self.locations.schedule(
            CallLocationJob(
                call_id=recorded.call_id,
                incident_id=recorded.incident_id,
                pani=facts.pani,
                geoloc_effective=facts.geoloc_effective,
                geoloc_method=facts.geoloc_method,
                geolocation=facts.geolocation,
                aml_number=aml_number(
                    asserted_number=facts.asserted_number,
                    caller_e164=facts.caller_e164,
                    caller_number=facts.caller_number,
                    caller_id_available=facts.caller_id_available,
                ),
                at=at,
            )
        )

    def _kick_sweep(self) -> None:
        if self.locations is None:
            return
        task = asyncio.get_running_loop().create_task(self._sweep_locations())
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)

    async def _sweep_locations(self) -> None:
        """Inline only: calls whose derivation never finished (deferred, failed, cut off,
        AMI-first or reconciled); younger ones are left to their own task."""
        if self.locations is not None:
            await self.locations.sweep(grace=INLINE_SWEEP_GRACE)

    async def _create_call(self, facts: CallFacts, at: datetime) -> None:
        # Seen first on this node's event stream: the call is this node's.
        facts = replace(facts, node=facts.node or self.node.name)
        async with self.sessionmaker() as session:
            await record_incoming(
                session=session, facts=facts, at=at, actor="system:ami", source="ami"
            )
            await session.commit()

    async def _write_operator_states(self, items: list[Pending]) -> int:
        async with self.sessionmaker() as session:
            written = await record_operator_states(
                session=session,
                items=items,
                node=self.node.name,
                nodes=[n.name for n in self.settings.pbx_nodes],
            )
            await session.commit()
            return written

    async def _write_progress(self, updates: list[CallProgress]) -> set[str]:
        # The tracker's batch has each call once: one self-contained statement (progress and
        # timeline lines together), so no BEGIN/COMMIT round trips either.
        try:
            async with self._one_statement() as session:
                missing = await apply_progress(session=session, updates=updates)
        except Exception as exc:
            # The tracker retries; the database being away is what this marks (a bad row
            # is not an outage).
            if db_unreachable(exc):
                self._database_failed = True
            raise
        self._database_answered()
        return missing

    def _autocommit_engine(self) -> AsyncEngine | None:
        """The sessions' engine in autocommit (made once per engine), None when the sessions
        are bound to something else (a connection)."""
        bind = getattr(self.sessionmaker, "kw", {}).get("bind")
        if not isinstance(bind, AsyncEngine):
            return None
        if self._autocommit is None or self._autocommit[0] is not bind:
            self._autocommit = (bind, bind.execution_options(isolation_level="AUTOCOMMIT"))
        return self._autocommit[1]

    @contextlib.asynccontextmanager
    async def _one_statement(self) -> AsyncIterator[Executor]:
        """Where one self-contained statement runs (the AGI step's, a batch of call progress):
        on an engine, a pooled connection in autocommit, without an ORM session (its set-up and
        commit were about a twentieth of serve's py-spy samples in bench/surge) and without
        BEGIN/COMMIT round trips. A sessionmaker bound to a connection (the tests' transaction)
        gives a session, committed at the end."""
        engine = self._autocommit_engine()
        if engine is not None:
            async with engine.connect() as conn:
                yield conn
            return
        async with self.sessionmaker() as session:
            yield session
            await session.commit()


def _uniqueid(message: Mapping[str, object]) -> str:
    value = message.get("Uniqueid")
    return value.strip() if isinstance(value, str) else ""


def _ignore(_event: AmiEvent) -> None:
    """Events of an actions-only session (none are sent; one racing the EventMask is dropped)."""
