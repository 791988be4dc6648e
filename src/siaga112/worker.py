"""`siaga112 worker`: background work that must not share an event loop (and a CPU core) with
the FastAGI server that answers 112 calls: the AMI event stream and reconciliation from the CDR
file (siaga112.runtime.telephony, role "events"), callers' locations
(siaga112.locations.worker), and linking and purging call recordings (file scans, SHA-256).

`siaga112 serve` starts one as a child process unless told not to (`--no-worker`); a
deployment may run it on its own instead. Its writes are idempotent and serialised per call in
PostgreSQL, so a second one does no harm, but one per Asterisk is all the event stream needs.
It serves its own `/metrics` and `/healthz` on SIAGA112_WORKER__HOST:PORT (127.0.0.1:8113; the
second process serve starts, on the next port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from siaga112.config import PbxNode, Settings
from siaga112.db.session import asyncpg_dsn, make_sessionmaker
from siaga112.events.retention import purge_forever
from siaga112.locations.worker import LocationWorker
from siaga112.metrics import Metrics
from siaga112.net import METRICS_FORBIDDEN, address_in
from siaga112.recordings.worker import RecordingWorker
from siaga112.runtime.lease import Lease
from siaga112.runtime.process import (
    PARENT_PID_ENV,
    die_with_parent,
    exit_when_orphaned,
    parent_to_follow,
)
from siaga112.runtime.telephony import Telephony

log = logging.getLogger(__name__)


def events_lease_name(settings: Settings, node: PbxNode | None = None) -> str:
    """The lease of one PBX node's AMI event stream and CDR file: one follower per node."""
    node = node if node is not None else settings.pbx_nodes[0]
    if node.systemname is None:
        # The one node of a deployment without nodes: the name it always had.
        return f"ami-events:{node.ami_host}:{node.ami_port}"
    return f"ami-events:{node.name}"


class NodeFollower:
    """One node's AMI events and CDR file, followed while this process holds the node's lease.
    While another process holds it, this one stands by warm: its telephony side is built
    (imports done, tracker and reconciler ready, the database pool open), so a takeover costs
    an AMI login, the resync and a CDR read, not a process start."""

    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        node: PbxNode,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.metrics = metrics
        self.node = node
        self._ready: Telephony | None = None

    async def prepare(self) -> None:
        if self._ready is None:
            self._ready = Telephony(
                settings=self.settings,
                sessionmaker=self.sessionmaker,
                metrics=self.metrics,
                role="events",
                node=self.node,
            )
            # Warm the pool: a connection is open when the lease comes.
            async with self.sessionmaker() as session:
                await session.execute(text("SELECT 1"))

    async def start(self) -> Telephony:
        await self.prepare()
        telephony, self._ready = self._ready, None
        assert telephony is not None
        started = time.monotonic()
        await telephony.start()
        log.info(
            "following node %s (%s:%d) %.0f ms after taking its lease",
            self.node.name,
            self.node.ami_host,
            self.node.ami_port,
            (time.monotonic() - started) * 1000,
        )
        return telephony

    async def stop(self, telephony: Telephony) -> None:
        await telephony.stop()


class MetricsServer:
    """GET /metrics (Prometheus text) and /healthz over plain HTTP/1.1, one request per
    connection. Tiny on purpose: a full ASGI server would take the process's signals."""

    def __init__(self, *, metrics: Metrics, allowed_networks: Sequence[str]) -> None:
        self.metrics = metrics
        # The API's /metrics rule (SIAGA112_API__METRICS_ALLOWED_NETWORKS), for the same reason.
        self.allowed_networks = list(allowed_networks)
        self._server: asyncio.base_events.Server | None = None

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
            path = rest.split(" ", 1)[0]
            peername = writer.get_extra_info("peername")
            peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""
            if method != "GET":
                status, body = "405 Method Not Allowed", "GET only\n"
            elif path == "/metrics" and not address_in(peer, self.allowed_networks):
                status, body = "403 Forbidden", f"{METRICS_FORBIDDEN}\n"
            elif path == "/metrics":
                status, body = "200 OK", self.metrics.render()
            elif path == "/healthz":
                status, body = "200 OK", '{"status":"ok"}\n'
            else:
                status, body = "404 Not Found", "not found\n"
            data = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()


def _bind(host: str, port: int) -> socket.socket | None:
    """The metrics socket, or None (logged) when the address is taken: the work goes on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        log.warning("worker metrics not served on %s:%d (%s); working on", host, port, exc)
        return None
    return sock


# What a worker process does; `siaga112 serve` starts one process for the AMI events and one
# for the rest, so that neither's event loop waits on the other's work (the location
# derivation beside the event stream delayed call_answered on the live stream from ~50 ms to
# ~2 s at 50 calls/s, bench/events).
Duty = Literal["events", "locations", "recordings"]
DUTIES: tuple[Duty, ...] = ("events", "locations", "recordings")


def parse_duties(text: str) -> frozenset[Duty]:
    chosen = {d.strip() for d in text.split(",") if d.strip()}
    unknown = chosen - set(DUTIES)
    if unknown or not chosen:
        raise ValueError(f"duties are a comma-separated choice of {', '.join(DUTIES)}")
    return frozenset(d for d in DUTIES if d in chosen)


async def work(
    settings: Settings,
    *,
    with_telephony: bool = True,
    duties: frozenset[Duty] = frozenset(DUTIES),
    metrics_port: int | None = None,
    parent_pid: int | None = None,
) -> None:
    from siaga112.runtime.process import open_database

    engine = await open_database(settings)
    sessionmaker = make_sessionmaker(engine)
    metrics = Metrics()
    follows_events = "events" in duties and with_telephony and settings.ami.events_in == "worker"

    # One follower per PBX node, whoever started it and wherever it runs; the others stand by
    # (siaga112.runtime.lease).
    followers = [
        NodeFollower(settings=settings, sessionmaker=sessionmaker, metrics=metrics, node=node)
        for node in (settings.pbx_nodes if follows_events else [])
    ]
    leases = [
        Lease(
            dsn=asyncpg_dsn(settings.database_url_str),
            name=events_lease_name(settings, follower.node),
            start=follower.start,
            stop=follower.stop,
            prepare=follower.prepare,
            metrics=metrics,
        )
        for follower in followers
    ]
    locations = (
        LocationWorker(settings=settings, sessionmaker=sessionmaker, metrics=metrics)
        if "locations" in duties and settings.locations.derive_in == "worker"
        else None
    )
    recorder = (
        RecordingWorker(
            sessionmaker=sessionmaker,
            settings=settings.recordings,
            root=settings.recordings_dir,
            metrics=metrics,
        )
        if "recordings" in duties
        else None
    )
    port = settings.worker.port if metrics_port is None else metrics_port
    sock = _bind(settings.worker.host, port) if port else None
    server = MetricsServer(metrics=metrics, allowed_networks=settings.api.metrics_allowed_networks)
    tasks: list[asyncio.Task[None]] = []
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    log.info(
        "worker: AMI events %s, locations %s, recordings %s",
        f"on ({', '.join(f.node.name for f in followers)})" if followers else "off",
        "on"
        if locations is not None
        else ("off (derived inline)" if "locations" in duties else "off"),
        "on" if recorder is not None and settings.recordings.enabled else "off",
    )
    try:
        for lease in leases:
            tasks.append(loop.create_task(lease.run()))
        if "events" in duties:
            # Whatever follows the AMI events also keeps the live stream's table bounded.
            tasks.append(
                loop.create_task(
                    purge_forever(
                        sessionmaker=sessionmaker,
                        retention_days=settings.events.retention_days,
                        metrics=metrics,
                    )
                )
            )
        if parent_pid is not None:
            tasks.append(loop.create_task(exit_when_orphaned(parent_pid)))
        if recorder is not None:
            await recorder.start()
        if locations is not None:
            tasks.append(loop.create_task(locations.run(poll_s=settings.locations.worker_poll_s)))
        if sock is not None:
            await server.start(sock)
        waiter = loop.create_task(stopping.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        await server.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if locations is not None:
            await locations.stop()
        if recorder is not None:
            await recorder.stop()
        await engine.dispose()


def run_worker(
    settings: Settings,
    *,
    with_telephony: bool = True,
    duties: frozenset[Duty] = frozenset(DUTIES),
    metrics_port: int | None = None,
    nice: int = 0,
) -> int:
    from siaga112.runtime.process import StartupError, loop_factory

    parent_pid = parent_to_follow()
    if parent_pid is not None:
        die_with_parent(parent_pid)
    if nice:
        # Below the AGI server and Asterisk: on a busy machine the calls go first.
        os.nice(nice)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(
                work(
                    settings,
                    with_telephony=with_telephony,
                    duties=duties,
                    metrics_port=metrics_port,
                    parent_pid=parent_pid,
                )
            )
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    return 0


class WorkerProcess:
    """`siaga112 serve`'s child `siaga112 worker`: started with the same environment, started
    again (after 1, 2, 4 ... 30 s) whenever it ends, stopped with the service."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        telephony: bool = True,
        duties: Sequence[Duty] = DUTIES,
        metrics_port: int | None = None,
        nice: int = 0,
        command: Sequence[str] | None = None,
        first_delay_s: float = 1.0,
    ) -> None:
        self.metrics = metrics
        base = [sys.executable, "-m", "siaga112", "worker", "--duties", ",".join(duties)]
        if not telephony:
            base.append("--no-telephony")
        if metrics_port is not None:
            base += ["--metrics-port", str(metrics_port)]
        if nice:
            base += ["--nice", str(nice)]
        self.command = tuple(command or base)
        self.first_delay_s = first_delay_s
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        delay = self.first_delay_s
        while True:
            started = time.monotonic()
            # The child ends with this process, however this one ends (die_with_parent).
            self._process = await asyncio.create_subprocess_exec(
                *self.command, env=dict(os.environ) | {PARENT_PID_ENV: str(os.getpid())}
            )
            self.metrics.inc("worker_starts")
            log.info("started siaga112 worker (pid %d)", self._process.pid)
            code = await self._process.wait()
            self.metrics.inc("worker_exits")
            if time.monotonic() - started > 60:
                delay = self.first_delay_s
            log.error("siaga112 worker ended (exit %s); starting it again in %.0f s", code, delay)
            await asyncio.sleep(delay)
            delay = min(30.0, delay * 2)

    async def stop(self, *, within_s: float = 10.0) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        started = time.monotonic()
        try:
            await asyncio.wait_for(process.wait(), within_s)
            log.info(
                "siaga112 worker (pid %d) stopped in %.1f s", process.pid,
                time.monotonic() - started,
            )  # fmt: skip
        except TimeoutError:
            log.warning(
                "siaga112 worker (pid %d) still running %.0f s after SIGTERM; killing it",
                process.pid,
                within_s,
            )
            process.kill()
            await process.wait()
