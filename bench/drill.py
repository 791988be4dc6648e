"""Fault drill: a steady stream of real calls through the real stack while, in turn, siaga112's
processes, the AMI connection, Asterisk and PostgreSQL fail (``python -m bench.drill``).

One phase per fault (bench/README.md, section "bench/drill", says what each does and how the
figures are defined): SIPp callers at ``--rate`` calls/s with distinct numbers for
``--step-seconds`` s into the bench queue (answered at once inside Asterisk by 32
members), the fault ``--fault-at`` s into the phase, then what an admin or a supervisor would do
about it. Per phase and in total: calls offered, taken by Asterisk, queued, answered by an
operator, with a call row and an incident, duplicate incidents, calls missing from the live
event stream, siaga112 processes left behind, and how long siaga112 took to be whole again.

``--soak 30m``: the same stack at ``--soak-rate`` calls/s (10) without faults, sampling serve's
and each worker's resident memory and the database's size every ``--sample-every`` s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.events import api_key
from bench.realstack import (
    BenchStack,
    CdrTail,
    Step,
    bench_main,
    bench_stack,
    log,
    read_rtt,
    run_step,
    step_caller,
)
from siaga112.config import Settings
from siaga112.db.session import asyncpg_dsn
from siaga112.telephony.cdr import CdrRecord
from siaga112_sandbox import pbx

BENCH_DATABASE = "siaga112_bench_drill"
STEP_KIND = 7  # the callers' number prefix: +628127NN... (bench.realstack.step_caller)
SOAK_KIND = 8
FAULTS = (
    "serve-kill9",
    "serve-sigterm",
    "events-worker-kill9",
    "other-worker-kill9",
    "ami-cut",
    "asterisk-restart",
    "postgresql-restart",
    "postgresql-down-30s",
)
PG_DOWN_S = 30.0
ADMIN_DELAY_S = 2.0  # an admin (or a supervisor) starting serve again after it ended
SIAGA112_PROCESS = re.compile(r"siaga112 (serve|worker)")


# ---------------------------------------------------------------------------------------------
# processes


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def siaga112_processes(database: str) -> dict[int, str]:
    """Every ``siaga112 serve`` and ``siaga112 worker`` of the drill's database (their
    environment names it): pid -> command line. Other databases' processes are not ours."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        cmd = _cmdline(pid)
        if not SIAGA112_PROCESS.search(cmd):
            continue
        url = _environ(pid).get("SIAGA112_DATABASE_URL", "")
        if url and database_of(url) == database:
            found[pid] = cmd
    return found


def database_of(url: str) -> str:
    """The database a connection URL names, also for multi-host URLs (``h1:p1,h2:p2``) that
    SQLAlchemy's URL parser refuses: another process's URL must never end the drill."""
    return url.split("?", 1)[0].rsplit("/", 1)[-1]


def workers_of(serve_pid: int | None, database: str) -> dict[str, int]:
    """serve's children by duty: ``events`` (the AMI follower) and ``other``."""
    if serve_pid is None:
        return {}
    out: dict[str, int] = {}
    for pid, cmd in siaga112_processes(database).items():
        if _ppid(pid) == serve_pid and "worker" in cmd:
            out["events" if "--duties events" in cmd else "other"] = pid
    return out


def left_behind(stack: BenchStack, database: str) -> list[str]:
    """siaga112 processes of the drill's database that are neither the current serve nor its
    children."""
    serve = stack.service.pid
    return [
        f"{pid} {cmd}"
        for pid, cmd in siaga112_processes(database).items()
        if pid != serve and (serve is None or _ppid(pid) != serve)
    ]


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


# ---------------------------------------------------------------------------------------------
# PostgreSQL: the cluster the drill's database lives on


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str

    @classmethod
    def serving(cls, port: int) -> Cluster:
        out = subprocess.run(
            ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] == str(port):
                return cls(parts[0], parts[1])
        raise SystemExit(f"no local PostgreSQL cluster on port {port} (pg_lsclusters)")

    def ctl(self, action: str) -> None:
        subprocess.run(["pg_ctlcluster", self.version, self.name, action], check=True, timeout=120)

    def online(self) -> bool:
        out = subprocess.run(
            ["pg_lsclusters", "--no-header", self.version, self.name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return "online" in out

    def ensure_started(self) -> None:
        if not self.online():
            log(f"PostgreSQL {self.version}/{self.name} is down: starting it")
            self.ctl("start")


def _db(database_url: str, query: str, *args: Any) -> list[asyncpg.Record] | None:
    """One query on a connection of its own; None while the database is unreachable."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
        try:
            rows: list[asyncpg.Record] = await conn.fetch(query, *args)
            return rows
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None


def call_rows(database_url: str, uniqueids: list[str]) -> dict[str, tuple[bool, str]] | None:
    rows = _db(
        database_url,
        "SELECT uniqueid, incident_id IS NOT NULL AS has_incident, linkedid FROM calls"
        " WHERE uniqueid = ANY($1::text[])",
        uniqueids,
    )
    if rows is None:
        return None
    return {r["uniqueid"]: (bool(r["has_incident"]), r["linkedid"]) for r in rows}


def duplicate_incidents(database_url: str, linkedids: list[str]) -> int:
    rows = _db(
        database_url,
        "SELECT linkedid FROM calls WHERE linkedid = ANY($1::text[]) AND incident_id IS NOT NULL"
        " GROUP BY linkedid HAVING count(DISTINCT incident_id) > 1",
        linkedids,
    )
    return -1 if rows is None else len(rows)


# ---------------------------------------------------------------------------------------------
# the live event stream: one SSE client, resuming with Last-Event-ID


class StreamClient:
    def __init__(self, base: str, key: str) -> None:
        self.base = base
        self.key = key
        self.offered: dict[str, int] = {}  # uniqueid -> times received
        self.last_id: int | None = None
        self.connects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="sse-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def received(self) -> dict[str, int]:
        with self._lock:
            return dict(self.offered)

    def _main(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        timeout = httpx.Timeout(5.0, read=30.0)
        with httpx.Client(base_url=self.base, headers=headers, timeout=timeout) as http:
            while not self._stop.is_set():
                resume = {} if self.last_id is None else {"Last-Event-ID": str(self.last_id)}
                try:
                    with http.stream(
                        "GET",
                        "/v1/events/stream",
                        params={"types": "call_offered"},
                        headers=resume,
                    ) as response:
                        response.raise_for_status()
                        self.connects += 1
                        self._read(response)
                except (httpx.HTTPError, OSError):
                    # serve is down or restarting: try again, as a console would.
                    self._stop.wait(0.5)

    def _read(self, response: httpx.Response) -> None:
        data = ""
        for line in response.iter_lines():
            if self._stop.is_set():
                return
            if line.startswith("data: "):
                data = line[6:]
            elif line == "" and data:
                event = json.loads(data)
                data = ""
                uniqueid = event["data"].get("uniqueid")
                with self._lock:
                    self.last_id = int(event["id"])
                    if uniqueid:
                        self.offered[uniqueid] = self.offered.get(uniqueid, 0) + 1


# ---------------------------------------------------------------------------------------------
# AMI state as the events worker reports it


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def worker_metrics(settings: Settings, port: int) -> str | None:
    try:
        response = httpx.get(f"http://{settings.worker.host}:{port}/metrics", timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


@dataclass(frozen=True)
class AmiMark:
    """Which process follows the AMI events and how many resynchronisations it has done."""

    pid: int | None
    resyncs: float

    def later_than(self, other: AmiMark) -> bool:
        return self.pid is not None and (
            (self.pid != other.pid and self.resyncs >= 1) or self.resyncs > other.resyncs
        )


def ami_mark(stack: BenchStack, database: str) -> AmiMark:
    pid = workers_of(stack.service.pid, database).get("events")
    text = worker_metrics(stack.settings, stack.settings.worker.port) if pid else None
    resyncs = _metric(text, "siaga112_ami_resyncs_total") if text else None
    return AmiMark(pid=pid, resyncs=resyncs or 0.0)


def kick_ami_sessions(settings: Settings) -> int:
    """Asterisk CLI ``manager kick session <fd>`` for every session of siaga112's AMI user (the
    events worker's and serve's): the TCP connections are closed by Asterisk."""
    out = pbx.cli(settings, "manager show connected", timeout=5)
    lines = out.splitlines()
    header = next((line.split() for line in lines if "FileDes" in line), None)
    if header is None:
        raise RuntimeError(f"unexpected 'manager show connected' output: {out!r}")
    # "IP Address" is one column of two words in the header.
    gap = 1 if "Address" in header else 0
    fd_col = header.index("FileDes") - gap
    kicked = 0
    for line in lines:
        parts = line.split()
        if len(parts) == len(header) - gap and parts[0] == settings.ami.username:
            pbx.cli(settings, f"manager kick session {parts[fd_col]}", timeout=5)
            kicked += 1
    return kicked


# ---------------------------------------------------------------------------------------------
# one phase


@dataclass
class Phase:
    fault: str
    caller: str
    rate: float
    seconds: float
    offered: int = 0
    sipp_successful: int = 0
    sipp_200_ok: int = 0
    taken: int = 0
    queued: int = 0
    answered: int = 0
    with_row_and_incident: int = 0
    without_row: list[str] = field(default_factory=list)
    duplicate_incidents: int = 0
    missing_from_stream: int = 0
    duplicated_in_stream: int = 0
    left_behind: list[str] = field(default_factory=list)
    fault_over_s: float | None = None
    """From the fault to the moment its cause was gone (process started again, Asterisk or
    PostgreSQL back)."""
    ami_resync_s: float | None = None
    """From the cause gone to serve ready and the AMI follower resynchronised."""
    backlog_s: float | None = None
    """From the cause gone to every call Asterisk had taken by then having its row and
    incident."""
    notes: list[str] = field(default_factory=list)


class Drill:
    def __init__(self, stack: BenchStack, args: argparse.Namespace, cluster: Cluster) -> None:
        self.stack = stack
        self.args = args
        self.cluster = cluster
        self.database = make_url(stack.database_url).database or BENCH_DATABASE
        self.stream = StreamClient(stack.service.base, api_key(stack.database_url))

    # -- faults: each returns once the fault's cause is gone ----------------------------------
    def _restart_serve(self) -> None:
        time.sleep(ADMIN_DELAY_S)
        self.stack.service.launch()

    def serve_kill9(self) -> None:
        proc = self.stack.service.proc
        assert proc is not None
        proc.kill()
        proc.wait(10)
        self._restart_serve()

    def serve_sigterm(self, phase: Phase) -> None:
        proc = self.stack.service.proc
        assert proc is not None
        started = time.monotonic()
        proc.terminate()
        try:
            proc.wait(30)
            phase.notes.append(f"serve ended {time.monotonic() - started:.1f} s after SIGTERM")
        except subprocess.TimeoutExpired:
            phase.notes.append("serve still running 30 s after SIGTERM: killed")
            proc.kill()
            proc.wait(10)
        self._restart_serve()

    def kill_worker(self, duty: str, phase: Phase) -> None:
        pid = workers_of(self.stack.service.pid, self.database).get(duty)
        if pid is None:
            raise RuntimeError(f"no {duty} worker under serve {self.stack.service.pid}")
        os.kill(pid, signal.SIGKILL)
        phase.notes.append(f"killed worker {pid}")

    def ami_cut(self, phase: Phase) -> None:
        phase.notes.append(f"kicked {kick_ami_sessions(self.stack.settings)} AMI session(s)")

    def asterisk_restart(self) -> None:
        pbx.down(self.stack.settings)
        pbx.up(self.stack.settings)

    def postgresql_restart(self) -> None:
        self.cluster.ctl("restart")

    def postgresql_down(self) -> None:
        self.cluster.ctl("stop")
        try:
            time.sleep(PG_DOWN_S)
        finally:
            self.cluster.ctl("start")

    def inject(self, phase: Phase) -> None:
        actions: dict[str, Callable[[], None]] = {
            "serve-kill9": self.serve_kill9,
            "serve-sigterm": lambda: self.serve_sigterm(phase),
            "events-worker-kill9": lambda: self.kill_worker("events", phase),
            "other-worker-kill9": lambda: self.kill_worker("other", phase),
            "ami-cut": lambda: self.ami_cut(phase),
            "asterisk-restart": self.asterisk_restart,
            "postgresql-restart": self.postgresql_restart,
            "postgresql-down-30s": self.postgresql_down,
        }
        actions[phase.fault]()

    # -- one phase ------------------------------------------------------------------------------
    def phase(self, index: int, fault: str) -> Phase:
        args = self.args
        seconds = args.step_seconds
        if fault == "postgresql-down-30s":
            seconds = max(seconds, args.fault_at + PG_DOWN_S + 15)
        phase = Phase(
            fault=fault, caller=step_caller(STEP_KIND, index), rate=args.rate, seconds=seconds
        )
        tail = CdrTail(self.stack.cdr.path)
        step_box: list[Step] = []
        sipp = threading.Thread(
            target=lambda: step_box.append(self._calls(phase.caller, args.rate, seconds)),
            name="sipp",
        )
        log(f"phase {index + 1}: {fault}: {args.rate:g} calls/s for {seconds:g} s")
        sipp.start()
        time.sleep(args.fault_at)
        before = ami_mark(self.stack, self.database)
        other_before = workers_of(self.stack.service.pid, self.database).get("other")
        fault_at = time.monotonic()
        log(f"  fault: {fault}")
        self.inject(phase)
        cause_gone = time.monotonic()
        cause_gone_wall = time.time()
        phase.fault_over_s = cause_gone - fault_at
        if fault == "other-worker-kill9":
            # The AMI is not this worker's: whole again once serve has started another one.
            self._wait_whole(phase, cause_gone, lambda: self._other_back(other_before))
        else:
            self._wait_whole(
                phase, cause_gone, lambda: ami_mark(self.stack, self.database).later_than(before)
            )
        self._wait_backlog(phase, tail, cause_gone, cause_gone_wall)
        sipp.join()
        step = step_box[0] if step_box else None
        if step is not None:
            phase.offered = step.planned
            phase.sipp_successful = step.sipp_successful
            phase.sipp_200_ok = len(read_rtt(self.stack.workdir / f"siaga112-{phase.caller[1:]}"))
        self._count(phase, tail)
        log(f"  {self.line(phase)}")
        return phase

    def _calls(self, caller: str, rate: float, seconds: float) -> Step:
        return run_step(
            self.stack.settings,
            self.stack.cdr,
            self.stack.workdir,
            scenario=self.stack.scenario,
            variant="siaga112",
            number=pbx.BENCH_AGI_NUMBER,
            caller=caller,
            rate=rate,
            seconds=seconds,
            hold_ms=int(self.args.hold * 1000),
        )

    def _other_back(self, killed: int | None) -> bool:
        pid = workers_of(self.stack.service.pid, self.database).get("other")
        port = self.stack.settings.worker.port + 1
        return (
            pid is not None
            and pid != killed
            and worker_metrics(self.stack.settings, port) is not None
        )

    def _wait_whole(self, phase: Phase, since: float, whole: Callable[[], bool]) -> None:
        """serve ready (database, AMI, AGI) and the events worker resynchronised after the
        fault (a new follower that has resynchronised, or the same one once more)."""
        service = self.stack.service
        deadline = since + self.args.settle
        while time.monotonic() < deadline:
            if service.ready() and whole():
                phase.ami_resync_s = time.monotonic() - since
                return
            if service.proc is not None and service.proc.poll() is not None:
                phase.notes.append(f"serve exited ({service.proc.returncode}); starting it")
                service.launch()
            time.sleep(0.1)
        phase.notes.append(f"AMI not resynchronised within {self.args.settle:g} s")

    def _wait_backlog(self, phase: Phase, tail: CdrTail, since: float, since_wall: float) -> None:
        """Every call Asterisk took up to the moment the fault's cause was gone has its row
        and incident. The last of them ends ``--hold`` s later (plus queueing): until then
        their CDR lines are still to come."""
        complete_after = since + self.args.hold + 5
        deadline = since + self.args.settle
        while time.monotonic() < deadline:
            tail.read()
            legs = [
                r
                for r in tail.legs(phase.caller)
                if r.start is not None and r.start.timestamp() <= since_wall
            ]
            rows = call_rows(self.stack.database_url, [r.uniqueid for r in legs]) if legs else {}
            if (
                rows is not None
                and time.monotonic() >= complete_after
                and all(rows.get(r.uniqueid, (False, ""))[0] for r in legs)
            ):
                phase.backlog_s = time.monotonic() - since
                return
            time.sleep(1)
        phase.notes.append(f"backlog not reconciled within {self.args.settle:g} s")

    def _count(self, phase: Phase, tail: CdrTail) -> None:
        tail.read()
        legs: list[CdrRecord] = tail.legs(phase.caller)
        phase.taken = len(legs)
        phase.queued = sum(1 for r in legs if r.queue)
        phase.answered = sum(1 for r in legs if r.answered_by)
        uniqueids = [r.uniqueid for r in legs]
        deadline = time.monotonic() + self.args.settle
        rows: dict[str, tuple[bool, str]] = {}
        while True:
            rows = call_rows(self.stack.database_url, uniqueids) or rows
            done = sum(1 for u in uniqueids if rows.get(u, (False, ""))[0])
            received = self.stream.received()
            missing = [u for u in rows if u not in received]
            if (done == len(uniqueids) and not missing) or time.monotonic() >= deadline:
                break
            time.sleep(1)
        phase.with_row_and_incident = done
        phase.without_row = [u for u in uniqueids if not rows.get(u, (False, ""))[0]]
        phase.missing_from_stream = len(missing)
        phase.duplicated_in_stream = sum(1 for u in rows if received.get(u, 0) > 1)
        phase.duplicate_incidents = duplicate_incidents(
            self.stack.database_url, sorted({linked for _, linked in rows.values()})
        )
        phase.left_behind = left_behind(self.stack, self.database)

    @staticmethod
    def line(p: Phase) -> str:
        def s(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f} s"

        return (
            f"{p.fault:20} offered {p.offered:>5}  taken {p.taken:>5}  queued {p.queued:>5}"
            f"  answered {p.answered:>5}  row+incident {p.with_row_and_incident:>5}"
            f"  dup {p.duplicate_incidents}  stream-missing {p.missing_from_stream}"
            f"  left {len(p.left_behind)}  AMI {s(p.ami_resync_s)}  backlog {s(p.backlog_s)}"
        )

    def run(self, faults: list[str]) -> list[Phase]:
        self.stream.start()
        phases: list[Phase] = []
        try:
            for index, fault in enumerate(faults):
                phases.append(self.phase(index, fault))
                time.sleep(self.args.pause)
        finally:
            self.stream.stop()
        return phases


# ---------------------------------------------------------------------------------------------
# soak


def database_size(database_url: str) -> int | None:
    rows = _db(database_url, "SELECT pg_database_size(current_database()) AS size")
    return None if not rows else int(rows[0]["size"])


def soak(stack: BenchStack, args: argparse.Namespace) -> dict[str, Any]:
    database = make_url(stack.database_url).database or BENCH_DATABASE
    samples: list[dict[str, Any]] = []
    step_box: list[Step] = []
    caller = step_caller(SOAK_KIND, 0)
    sipp = threading.Thread(
        target=lambda: step_box.append(
            run_step(
                stack.settings,
                stack.cdr,
                stack.workdir,
                scenario=stack.scenario,
                variant="siaga112",
                number=pbx.BENCH_AGI_NUMBER,
                caller=caller,
                rate=args.soak_rate,
                seconds=args.soak,
                hold_ms=int(args.hold * 1000),
            )
        ),
        name="sipp",
        # An error in the sampling loop must end the drill (and free the sandbox's lock),
        # not leave the process waiting on this thread for the rest of the soak.
        daemon=True,
    )
    started = time.monotonic()
    sipp.start()
    while True:
        serve = stack.service.pid
        workers = workers_of(serve, database)
        sample = {
            "t_s": round(time.monotonic() - started, 1),
            "serve_rss_kib": rss_kib(serve) if serve else None,
            "events_worker_rss_kib": rss_kib(workers["events"]) if "events" in workers else None,
            "other_worker_rss_kib": rss_kib(workers["other"]) if "other" in workers else None,
            "database_bytes": database_size(stack.database_url),
        }
        samples.append(sample)
        log(f"soak sample {sample}")
        if not sipp.is_alive():
            break
        sipp.join(timeout=args.sample_every)
    step = step_box[0] if step_box else None

    def per_hour(key: str) -> float | None:
        # The first sample is taken while the workers still start (imports, pools): growth is
        # measured from the second on.
        points = [(s["t_s"], s[key]) for s in samples[1:] if s[key] is not None]
        if len(points) < 2 or points[-1][0] <= points[0][0]:
            return None
        (t0, v0), (t1, v1) = points[0], points[-1]
        return float((v1 - v0) / (t1 - t0) * 3600)

    return {
        "mode": "soak",
        "rate": args.soak_rate,
        "seconds": args.soak,
        "offered": step.planned if step else None,
        "taken": step.arrived if step else None,
        "answered": step.served_by_operator if step else None,
        "samples": samples,
        "growth_per_hour": {
            key: per_hour(key)
            for key in (
                "serve_rss_kib",
                "events_worker_rss_kib",
                "other_worker_rss_kib",
                "database_bytes",
            )
        },
    }


# ---------------------------------------------------------------------------------------------
# the run


def totals(phases: list[Phase]) -> dict[str, Any]:
    def worst(name: str) -> float | None:
        values = [getattr(p, name) for p in phases]
        return None if any(v is None for v in values) or not values else max(values)

    return {
        "offered": sum(p.offered for p in phases),
        "sipp_200_ok": sum(p.sipp_200_ok for p in phases),
        "taken": sum(p.taken for p in phases),
        "queued": sum(p.queued for p in phases),
        "answered": sum(p.answered for p in phases),
        "with_row_and_incident": sum(p.with_row_and_incident for p in phases),
        "duplicate_incidents": sum(max(0, p.duplicate_incidents) for p in phases),
        "missing_from_stream": sum(p.missing_from_stream for p in phases),
        "worst_ami_resync_s": worst("ami_resync_s"),
        "worst_backlog_s": worst("backlog_s"),
    }


@contextlib.contextmanager
def postgresql_always_started(cluster: Cluster) -> Iterator[None]:
    """PostgreSQL is never left stopped, also when the drill fails or is interrupted."""
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        cluster.ensure_started()
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    port = make_url(args.database_url or base.database_url_str).port or 5432
    cluster = Cluster.serving(port)
    with (
        postgresql_always_started(cluster),
        bench_stack(
            module="bench.drill",
            database_url=args.database_url,
            default_database=BENCH_DATABASE,
            wait_busy_s=args.wait_busy,
            keep_cdr=args.keep_cdr,
        ) as stack,
    ):
        result = stack.result
        result["postgresql_cluster"] = f"{cluster.version}/{cluster.name}"
        if args.soak:
            result.update(soak(stack, args))
        else:
            drill = Drill(stack, args, cluster)
            phases = drill.run(args.faults)
            result["mode"] = "drill"
            result["rate"] = args.rate
            result["hold_s"] = args.hold
            result["phases"] = [asdict(p) for p in phases]
            result["totals"] = totals(phases)
            result["stream_connects"] = drill.stream.connects
    database = make_url(stack.database_url).database or BENCH_DATABASE
    # After the stack is down: nothing of the drill's database may still run.
    result["left_behind_at_end"] = [f"{p} {c}" for p, c in siaga112_processes(database).items()]
    return result


def report(result: dict[str, Any]) -> str:
    out = [
        "bench/drill",
        f"command: {result['command']}",
        f"machine: {json.dumps(result.get('machine', {}))}",
        f"run directory: {result['run_directory']}",
    ]
    if result.get("mode") == "soak":
        out.append(f"soak: {result['rate']:g} calls/s for {result['seconds']:g} s")
        out.append(f"  offered {result['offered']} taken {result['taken']}"
                   f" answered {result['answered']}")  # fmt: skip
        out.append("  t(s)   serve KiB  events KiB  other KiB  database bytes")
        for s in result["samples"]:
            out.append(
                f"  {s['t_s']:>5}  {s['serve_rss_kib']}  {s['events_worker_rss_kib']}"
                f"  {s['other_worker_rss_kib']}  {s['database_bytes']}"
            )
        out.append("  growth per hour (last - second sample): " + json.dumps(
            {k: None if v is None else round(v) for k, v in result["growth_per_hour"].items()}
        ))  # fmt: skip
    else:
        out.append(f"{result['rate']:g} calls/s, {result['hold_s']:g} s each")
        header = (
            "| fault | offered | 200 OK | taken | queued | answered | row+incident"
            " | dup incidents | missing from stream | left behind | AMI resync"
            " | backlog reconciled |"
        )
        out += [header, "|" + " --- |" * 12]
        for p in result["phases"]:
            out.append(_row(p))
        t = result["totals"]
        out.append(
            f"| total | {t['offered']} | {t['sipp_200_ok']} | {t['taken']} | {t['queued']}"
            f" | {t['answered']}"
            f" | {t['with_row_and_incident']} | {t['duplicate_incidents']}"
            f" | {t['missing_from_stream']} | {len(result['left_behind_at_end'])}"
            f" | {_s(t['worst_ami_resync_s'])} max | {_s(t['worst_backlog_s'])} max |"
        )
        for p in result["phases"]:
            if p["notes"] or p["without_row"] or p["left_behind"]:
                out.append(f"  {p['fault']}: {'; '.join(p['notes'])}")
                if p["without_row"]:
                    out.append(f"    without row/incident: {p['without_row'][:10]}")
                if p["left_behind"]:
                    out.append(f"    left behind: {p['left_behind']}")
        out.append(f"SSE connections (1 + reconnects): {result['stream_connects']}")
    out.append(f"siaga112 processes left at the end: {result['left_behind_at_end'] or 'none'}")
    out.append(f"CDR: {result.get('cdr')}")
    return "\n".join(out)


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def _row(p: dict[str, Any]) -> str:
    return (
        f"| {p['fault']} | {p['offered']} | {p['sipp_200_ok']} | {p['taken']} | {p['queued']}"
        f" | {p['answered']}"
        f" | {p['with_row_and_incident']} | {p['duplicate_incidents']}"
        f" | {p['missing_from_stream']} | {len(p['left_behind'])} | {_s(p['ami_resync_s'])}"
        f" | {_s(p['backlog_s'])} |"
    )


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("a duration like 90, 90s, 3m or 1h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _faults(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FAULTS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"faults are a comma-separated choice of {FAULTS}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drill", description=__doc__)
    p.add_argument("--rate", type=float, default=20.0, help="calls per second (default 20)")
    p.add_argument("--hold", type=float, default=2.0, help="seconds a caller stays on the line")
    p.add_argument(
        "--step-seconds", type=float, default=40.0, help="length of one phase's calls (40)"
    )
    p.add_argument("--fault-at", type=float, default=10.0, help="the fault, s into a phase")
    p.add_argument(
        "--settle", type=float, default=90.0, help="longest wait for recovery and rows (90)"
    )
    p.add_argument("--pause", type=float, default=3.0, help="seconds between phases")
    p.add_argument(
        "--faults", type=_faults, default=list(FAULTS), help="comma-separated, default all"
    )
    p.add_argument("--soak", type=_duration, default=0.0, help="soak instead: e.g. 30m")
    p.add_argument(
        "--ha",
        action="store_true",
        help="the high-availability drill instead (bench/drill_ha.py): two Asterisk nodes "
        "behind Kamailio, one killed",
    )
    p.add_argument("--soak-rate", type=float, default=10.0, help="soak calls/s (10)")
    p.add_argument("--sample-every", type=float, default=60.0, help="soak sample interval, s (60)")
    p.add_argument(
        "--wait-busy", type=float, default=180.0, help="wait this long for a busy sandbox"
    )
    p.add_argument("--database-url", default=None, help=f"default: .../{BENCH_DATABASE}")
    p.add_argument("--keep-cdr", action="store_true", help="leave the drill's CDR lines")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if args.rate <= 0 or args.step_seconds <= args.fault_at:
        p.error("--rate must be positive and --step-seconds longer than --fault-at")
    if args.ha:
        from bench import drill_ha

        return bench_main(args, drill_ha.run, drill_ha.report)
    return bench_main(args, run, report)


if __name__ == "__main__":
    raise SystemExit(main())
