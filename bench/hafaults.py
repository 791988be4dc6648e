"""Faults of the high-availability drill that concern siaga112's own processes and PostgreSQL
(``bench/drill --ha`` calls these; ``python -m bench.hafaults`` runs the PostgreSQL failover on
its own and prints its figures).

- ``kill_instance``: one `siaga112 serve` killed with ``kill -9``; its worker children must end
  with it (they are what follows the AMI and reconciles), and the other instance's events worker
  takes the PBX's lease (``wait_lease_moved``).
- ``pg_failover``: the PostgreSQL primary dies as in a crash (immediate shutdown), the replica
  is promoted by hand after ``admin_delay_s``, and the time until siaga112 writes again is
  measured with a probe the caller gives (an API write, an AGI call).

Standalone, on the sandbox pair (``siaga112_sandbox.pgha``, other ports than ``pgha up``'s):
a fresh primary and replica, a database migrated through the multi-host URL, one
``siaga112 serve --api-only`` on it, API writes (``POST /v1/incidents``) at ``--rate`` per second
throughout, and per round: the primary killed, the replica promoted, the old primary rebuilt as
the new replica. Reports per round the writes that failed, the time from the crash to the first
write that succeeded after the last that failed ("writes whole"), and to ``/readyz`` answering
200 again. Needs root (PostgreSQL runs as
``postgres``); no Asterisk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from siaga112 import models  # noqa: F401 - every table mapped, for create_key
from siaga112.auth.roles import Role
from siaga112.auth.service import create_key, system_actor
from siaga112.config import Settings
from siaga112.db.session import asyncpg_dsn, make_engine, make_sessionmaker
from siaga112.runtime.lease import lease_key
from siaga112_sandbox import pgha, procs

POLL_S = 0.05


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# a siaga112 instance


@dataclass
class InstanceKill:
    serve_pid: int
    killed_at: float  # time.monotonic() of the kill
    worker_pids: list[int]
    workers_ended_s: float | None  # None: some still alive after the wait
    left_behind: list[int] = field(default_factory=list)


def kill_instance(serve_pid: int, *, within_s: float = 10.0) -> InstanceKill:
    """``kill -9`` of one serve; waits for its workers to end with it."""
    workers = procs.children(serve_pid)
    os.kill(serve_pid, signal.SIGKILL)
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if not any(procs.alive(p) for p in workers):
            return InstanceKill(serve_pid, started, workers, time.monotonic() - started)
        time.sleep(POLL_S)
    return InstanceKill(serve_pid, started, workers, None, [p for p in workers if procs.alive(p)])


async def lease_holder(database_url: str, name: str) -> int | None:
    """The backend pid holding the lease ``name`` (siaga112.runtime.lease), None when free."""
    key = lease_key(name)
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
    try:
        pid: int | None = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = (($1::bigint >> 32) & x'ffffffff'::bigint)::oid"
            " AND objid = ($1::bigint & x'ffffffff'::bigint)::oid AND objsubid = 1",
            key,
        )
        return pid
    finally:
        await conn.close()


async def wait_lease_moved(
    database_url: str,
    name: str,
    old_holder: int | None,
    *,
    since: float | None = None,
    within_s: float = 30.0,
) -> float | None:
    """Seconds from ``since`` (``time.monotonic()``, default now: e.g. ``InstanceKill.killed_at``)
    until a backend other than ``old_holder`` holds the lease (None: not within)."""
    started = time.monotonic() if since is None else since
    while time.monotonic() - started < within_s:
        try:
            holder = await lease_holder(database_url, name)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            holder = None
        if holder is not None and holder != old_holder:
            return time.monotonic() - started
        await asyncio.sleep(POLL_S)
    return None


# ---------------------------------------------------------------------------------------------
# PostgreSQL primary


@dataclass
class PgFailover:
    killed: str
    promoted: str
    promoted_after_s: float
    writable_after_s: float | None  # from the crash to the probe's first success


def primary_of(pair: pgha.PgHa) -> str:
    for node in pgha.status(pair):
        if node.running and node.role == "primary":
            return node.name
    raise RuntimeError("no running primary")


def pg_failover(
    pair: pgha.PgHa,
    probe: Callable[[], bool],
    *,
    admin_delay_s: float = 0.0,
    within_s: float = 60.0,
) -> PgFailover:
    """Crash the primary, promote the replica after ``admin_delay_s``, and time until
    ``probe()`` (a write through siaga112) succeeds."""
    old = primary_of(pair)
    killed_at = time.monotonic()
    pgha.kill(pair, old)
    time.sleep(admin_delay_s)
    new = pgha.promote(pair)
    promoted_after = time.monotonic() - killed_at
    while time.monotonic() - killed_at < within_s:
        if probe():
            return PgFailover(old, new, promoted_after, time.monotonic() - killed_at)
        time.sleep(POLL_S)
    return PgFailover(old, new, promoted_after, None)


# ---------------------------------------------------------------------------------------------
# standalone: serve on the pair, API writes throughout


class Writer(threading.Thread):
    """API writes at a steady rate; counts and remembers when each succeeded or failed."""

    def __init__(self, base: str, key: str, rate: float) -> None:
        super().__init__(name="writer", daemon=True)
        self.client = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=5
        )
        self.every = 1 / rate
        self.results: list[tuple[float, bool]] = []
        self.stop = threading.Event()

    def write(self) -> bool:
        try:
            ok = self.client.post("/v1/incidents", json={"channel": "radio"}).status_code == 201
        except httpx.HTTPError:
            ok = False
        self.results.append((time.monotonic(), ok))
        return ok

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.write()

    def between(self, start: float, end: float) -> tuple[int, int]:
        rows = [ok for t, ok in self.results if start <= t <= end]
        return len(rows), sum(1 for ok in rows if not ok)

    def whole_after(self, t: float, end: float) -> float | None:
        """From ``t`` to the first write that succeeded after the last one that failed."""
        failed = [at for at, ok in self.results if t <= at <= end and not ok]
        if not failed:
            return 0.0
        return next((at - t for at, ok in self.results if at > failed[-1] and ok), None)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def _admin_key(url: str) -> str:
    engine = make_engine(Settings(database_url=url))
    try:
        async with make_sessionmaker(engine)() as session:
            key = await create_key(
                session=session, name="hafaults", role=Role.ADMIN, actor=system_actor("bench")
            )
            await session.commit()
    finally:
        await engine.dispose()
    return key.raw


def run(args: argparse.Namespace) -> dict[str, Any]:
    base_dir = Path("/var/lib/postgresql") / f"siaga112-pgha-bench-{uuid.uuid4().hex[:8]}"
    pair = pgha.PgHa(base=base_dir, ports=(args.ports[0], args.ports[1]))
    rounds: list[dict[str, Any]] = []
    with pgha.running(pair):
        url = pair.url("siaga112_bench_hafaults")
        env = dict(os.environ) | {"SIAGA112_DATABASE_URL": url}
        subprocess.run(
            [sys.executable, "-m", "siaga112", "db", "upgrade"], env=env, check=True, timeout=120
        )
        key = asyncio.run(_admin_key(url))
        port = procs.free_port()
        state = base_dir.with_name(base_dir.name + "-state")
        env |= {
            "SIAGA112_API__PORT": str(port),
            "SIAGA112_WORKER__PORT": str(procs.free_port()),
            "SIAGA112_STATE_DIR": str(state),
            "SIAGA112_RECORDINGS__ENABLED": "false",
        }
        serve = subprocess.Popen(
            [sys.executable, "-m", "siaga112", "serve", "--api-only"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _ready(base):
                if time.monotonic() > deadline:
                    raise SystemExit("serve did not become ready")
                time.sleep(0.2)
            writer = Writer(base, key, args.rate)
            writer.start()
            for n in range(args.rounds):
                time.sleep(args.settle_s)
                log(f"round {n + 1}: crashing the primary, promoting after {args.admin_delay_s} s")
                killed_at = time.monotonic()
                result = pg_failover(pair, lambda: _ready(base), admin_delay_s=args.admin_delay_s)
                time.sleep(args.settle_s)
                attempted, failed = writer.between(killed_at, time.monotonic())
                rounds.append(
                    asdict(result)
                    | {
                        "ready_after_s": result.writable_after_s,
                        "writes_whole_after_s": writer.whole_after(killed_at, time.monotonic()),
                        "writes": attempted,
                        "writes_failed": failed,
                    }
                )
                pgha.rejoin(pair, result.killed)
            writer.stop.set()
            writer.join(5)
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(20)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait(5)
            shutil.rmtree(state, ignore_errors=True)
    return {"rate": args.rate, "admin_delay_s": args.admin_delay_s, "rounds": rounds}


def run_instance_kill(args: argparse.Namespace) -> dict[str, Any]:
    """Two `siaga112 serve` (their events workers compete for one PBX's lease; the AMI port is
    closed, no Asterisk needed: the lease is taken before the AMI login), then per round the
    lease holder's serve is killed with ``kill -9`` and started again."""
    from siaga112.db.manage import drop_database, upgrade
    from siaga112.db.url import with_database

    url = with_database(args.database_url, "siaga112_bench_hafaults")
    upgrade(url)
    ami_port = procs.free_port()
    name = f"ami-events:127.0.0.1:{ami_port}"
    state = Path(tempfile.mkdtemp(prefix="siaga112-hafaults-"))

    def start(i: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ) | {
            "SIAGA112_DATABASE_URL": url,
            "SIAGA112_API__PORT": str(procs.free_port()),
            "SIAGA112_WORKER__PORT": str(procs.free_port()),
            "SIAGA112_AGI__PORT": str(procs.free_port()),
            "SIAGA112_AMI__PORT": str(ami_port),
            "SIAGA112_AMI__SECRET": "hafaults-not-a-real-secret",
            "SIAGA112_STATE_DIR": str(state / str(i)),
            "SIAGA112_RECORDINGS__ENABLED": "false",
        }
        return subprocess.Popen(
            [sys.executable, "-m", "siaga112", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    serves = [start(0)]
    time.sleep(3)
    serves.append(start(1))
    rounds: list[dict[str, Any]] = []
    try:
        for n in range(args.rounds):
            holder = None
            deadline = time.monotonic() + 60
            while holder is None and time.monotonic() < deadline:
                holder = asyncio.run(lease_holder(url, name))
                time.sleep(0.2)
            owner = lease_owner_pid(url, name, [p.pid for p in serves])
            victim = next(i for i, p in enumerate(serves) if p.pid == owner)
            log(f"round {n + 1}: kill -9 of serve {serves[victim].pid} (holds the lease)")
            killed = kill_instance(serves[victim].pid)
            moved = asyncio.run(wait_lease_moved(url, name, holder, since=killed.killed_at))
            serves[victim].wait(5)
            rounds.append(
                {
                    "workers_ended_s": killed.workers_ended_s,
                    "left_behind": killed.left_behind,
                    "lease_moved_s": moved,
                }
            )
            serves[victim] = start(victim)
            time.sleep(args.settle_s)
    finally:
        for p in serves:
            for child in procs.children(p.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            p.kill()
            p.wait(5)
        shutil.rmtree(state, ignore_errors=True)
        asyncio.run(drop_database(url))
    return {"fault": "instance", "rounds": rounds}


async def _lease_client_port(database_url: str, name: str) -> int | None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
    try:
        port: int | None = await conn.fetchval(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.objid = ($1::bigint & x'ffffffff'::bigint)::oid",
            lease_key(name),
        )
        return port
    finally:
        await conn.close()


def lease_owner_pid(database_url: str, name: str, serve_pids: list[int]) -> int | None:
    """Which of ``serve_pids`` holds the lease ``name`` through one of its workers (None: the
    lease is free, or held by none of them): the holder's client port, found among the sockets
    of each serve's children."""
    port = asyncio.run(_lease_client_port(database_url, name))
    if port is None:
        return None
    inodes = _socket_inodes_of_local_port(port)
    for serve in serve_pids:
        for child in procs.children(serve):
            try:
                fds = list(Path(f"/proc/{child}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return serve
    return None


def _socket_inodes_of_local_port(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def report(result: dict[str, Any]) -> str:
    if result.get("fault") == "instance":
        lines = ["kill -9 of the siaga112 serve whose events worker holds the PBX's lease:"]
        for i, r in enumerate(result["rounds"], start=1):
            ended = "-" if r["workers_ended_s"] is None else f"{r['workers_ended_s']:.2f} s"
            moved = "-" if r["lease_moved_s"] is None else f"{r['lease_moved_s']:.2f} s"
            lines.append(
                f"round {i}: its workers ended after {ended}, the other instance followed "
                f"after {moved}, left behind: {r['left_behind'] or 'none'}"
            )
        return "\n".join(lines)
    lines = [
        f"PostgreSQL failover under API writes at {result['rate']:g}/s, replica promoted "
        f"{result['admin_delay_s']:g} s after the crash:",
        f"{'round':>5} {'killed':>6} {'promoted':>8} {'promote s':>9} {'writes whole s':>14} "
        f"{'readyz s':>8} {'writes':>6} {'failed':>6}",
    ]
    for i, r in enumerate(result["rounds"], start=1):
        fw = "-" if r["writes_whole_after_s"] is None else f"{r['writes_whole_after_s']:.2f}"
        ready = "-" if r["ready_after_s"] is None else f"{r['ready_after_s']:.2f}"
        lines.append(
            f"{i:>5} {r['killed']:>6} {r['promoted']:>8} {r['promoted_after_s']:>9.2f} "
            f"{fw:>14} {ready:>8} {r['writes']:>6} {r['writes_failed']:>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hafaults", description=__doc__)
    parser.add_argument(
        "fault",
        nargs="?",
        choices=["pg", "instance"],
        default="pg",
        help="pg: PostgreSQL failover (default); instance: kill -9 of a siaga112 serve",
    )
    parser.add_argument(
        "--database-url",
        default=Settings().database_url_str,
        help="instance: the server its database is created on",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="API writes per second")
    parser.add_argument("--rounds", type=int, default=2, help="failovers (pg1->pg2, pg2->pg1)")
    parser.add_argument("--admin-delay-s", type=float, default=2.0, help="crash to promotion")
    parser.add_argument("--settle-s", type=float, default=3.0, help="writes before and after")
    parser.add_argument("--ports", type=int, nargs=2, default=[5471, 5472])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (PostgreSQL runs as the postgres user)", file=sys.stderr)
        return 2
    result = run(args) if args.fault == "pg" else run_instance_kill(args)
    print(report(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
