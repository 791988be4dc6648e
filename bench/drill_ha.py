"""The high-availability drill (``python -m bench.drill --ha``): a steady stream of real calls
through Kamailio to two Asterisk nodes and two siaga112 instances on a PostgreSQL primary and
its streaming replica, while one of each is killed in turn.

The stack: two nodes of the sandbox (siaga112_sandbox.nodes) behind Kamailio on 127.0.0.10; two
`siaga112 serve` (each with its workers; distinct API, AGI and worker metrics ports; the
dialplan's AGI targets list both, so a call tries the first and then the other within the one
budget); the sandbox's PostgreSQL pair (siaga112_sandbox.pgha, its own ports) reached through the
multi-host URL with ``target_session_attrs=read-write``. One phase per fault, each with SIPp
callers (caller-112-proxy.xml, each on the line for a time drawn within ``--hold`` x 0.5 to 1.5:
``stream_scenario``) at ``--rate`` calls/s for ``--step-seconds`` s and the fault ``--fault-at``
s in:

- ``node``: ``kill -9`` of node ha-b's Asterisk; whole when a probe call through the proxy is
  answered again. The node is started again after the phase.
- ``instance``: ``kill -9`` of the serve whose events worker holds node ha-a's lease (its workers
  die with it); whole when every lease it held is held by the other instance's standby, that
  standby has completed a resync, and a probe call is answered. The serve is started again after
  the phase.
- ``pg``: immediate shutdown of the PostgreSQL primary, the replica promoted ``--admin-delay-s``
  later (an admin by hand); whole when both serves answer ``/readyz`` (their database writable
  again) and a probe call is answered.

The sandbox's demo operators (``pbx.demo_operators``) answer as SIPp phones, each registered
with both nodes (siaga112_sandbox.sipp.SippOperator), so calls through either node are answered.

Per phase and in total: calls offered (SIPp and probes), taken (answered by a node), with a call
row, with an incident, queued and answered (by an operator phone, from the rows; also per
node), duplicate incidents, calls left open, the time to be whole, the time from the fault until
every taken call of the phase had its row and incident ("reconciled"; includes the rest of the
phase's stream), when the last row of a call offered before the fault was written (its
backlog), and for the calls only the CDR file gave a row (source ``reconciled``): the longest
time from a call's end (its CDR line) to its row, and when the last of those rows was written.
Needs root (Asterisk's chroot, PostgreSQL as ``postgres``); run under the sandbox lock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.hafaults import (
    kill_instance,
    lease_holder,
    lease_owner_pid,
    pg_failover,
    wait_lease_moved,
)
from bench.realstack import READY_TIMEOUT_S, log
from siaga112.config import PbxNodeSettings, PbxSettings, Settings
from siaga112.db.manage import upgrade
from siaga112.db.session import asyncpg_dsn
from siaga112.worker import events_lease_name
from siaga112_sandbox import pgha, procs
from siaga112_sandbox.nodes import NodeSandbox, Proxy
from siaga112_sandbox.sipp import (
    SIP_CONF,
    SippOperator,
    pbx_unavailable_reason,
    run_caller,
)

BENCH_DATABASE = "siaga112_bench_drill_ha"
CDR_FILE = "siaga112-cdr-bench-ha.csv"
PROXY = "127.0.0.10"
NODES = [
    PbxNodeSettings(name="ha-a", ami_host="127.0.0.11", sip_address="127.0.0.11"),
    PbxNodeSettings(name="ha-b", ami_host="127.0.0.12", sip_address="127.0.0.12"),
]
FAULTS = ("node", "instance", "pg")
PG_PORTS = (5491, 5492)
PROBE_EVERY_S = 0.25
# Each stream caller stays on the line a time drawn uniformly from hold x (1 -/+ HOLD_SPREAD),
# not the same --hold for all: with every caller leaving after the same time at a steady rate,
# app_queue (ringall: only the first caller not already ringing may ring the operators; the
# others look again once a second) never had a caller at the head of the queue when it looked,
# and the operators' phones stood idle behind a full queue (bench/README.md, "bench/drill --ha:
# why the phones answered so few calls").
HOLD_SPREAD = 0.5
CALLER_SCENARIO = "caller-112-proxy.xml"
WHOLE_WITHIN_S = 30.0


@dataclass(frozen=True)
class Instance:
    """One `siaga112 serve` of the drill: its ports (its workers' metrics on ``worker_port``
    and the next)."""

    name: str
    agi_port: int
    api_port: int
    worker_port: int

    @property
    def agi_target(self) -> str:
        return f"127.0.0.1:{self.agi_port}"


INSTANCES = [Instance("a", 4593, 8193, 8194), Instance("b", 4603, 8203, 8204)]


@dataclass
class Running:
    instance: Instance
    process: subprocess.Popen[bytes]
    # Its workers when it became ready, with their start times (procs.start_time): a pid the
    # system has given to another process since is never killed.
    children: list[tuple[int, int | None]] = field(default_factory=list)


def stream_scenario(hold_s: float, directory: Path) -> Path:
    """The stream's caller scenario, written into ``directory``: CALLER_SCENARIO with its time on
    the line drawn per call, uniformly within ``hold_s`` x (1 -/+ HOLD_SPREAD) (SIPp's pause
    distribution)."""
    low = int(hold_s * (1 - HOLD_SPREAD) * 1000)
    high = int(hold_s * (1 + HOLD_SPREAD) * 1000)
    text = (SIP_CONF / CALLER_SCENARIO).read_text()
    if text.count("<pause/>") != 1:
        raise RuntimeError(f"{CALLER_SCENARIO}: expected one <pause/> (the time on the line)")
    path = directory / f"stream-{CALLER_SCENARIO}"
    path.write_text(
        text.replace("<pause/>", f'<pause distribution="uniform" min="{low}" max="{high}"/>')
    )
    return path


def _serve(
    settings: Settings, database_url: str, instance: Instance, log_path: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIAGA112_")} | {
        "SIAGA112_DATABASE_URL": database_url,
        "SIAGA112_STATE_DIR": str(settings.state_dir),
        "SIAGA112_AGI__PORT": str(instance.agi_port),
        "SIAGA112_AGI__TARGETS": json.dumps(settings.agi.targets),
        "SIAGA112_API__PORT": str(instance.api_port),
        "SIAGA112_WORKER__PORT": str(instance.worker_port),
        "SIAGA112_PBX__CDR_FILE_NAME": CDR_FILE,
        "SIAGA112_PBX__CARRIER_ADDRESSES": json.dumps(["127.0.0.2", PROXY]),
        "SIAGA112_PBX__NODES": json.dumps([n.model_dump(mode="json") for n in NODES]),
    }
    with log_path.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "siaga112", "serve"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _with_start_times(pids: list[int]) -> list[tuple[int, int | None]]:
    return [(pid, procs.start_time(pid)) for pid in pids]


def _ready(instance: Instance) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{instance.api_port}/readyz", timeout=2
        ) as response:
            return bool(json.loads(response.read()).get("ready"))
    except (OSError, ValueError):
        return False


def _wait_ready(running: Running) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"siaga112 serve {running.instance.name} exited at start")
        if _ready(running.instance):
            running.children = _with_start_times(procs.children(running.process.pid))
            return
        time.sleep(0.2)
    raise RuntimeError(f"siaga112 serve {running.instance.name} not ready")


def _resyncs_completed(instance: Instance) -> float:
    """``siaga112_ami_resyncs_completed_total`` summed over the instance's two workers."""
    total = 0.0
    for port in (instance.worker_port, instance.worker_port + 1):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("siaga112_ami_resyncs_completed"):
                with contextlib.suppress(ValueError, IndexError):
                    total += float(line.split()[-1])
    return total


async def _figures(
    database_url: str, since: datetime, until: datetime, fault: datetime
) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT node, count(*) AS calls, count(incident_id) AS with_incident,"
            " count(*) FILTER (WHERE ended_at IS NULL) AS open,"
            " count(enqueued_at) AS queued, count(answered_at) AS answered"
            " FROM calls WHERE offered_at >= $1 AND offered_at < $2"
            " AND dialled_number = '112' GROUP BY node",
            since,
            until,
        )
        sources = await conn.fetch(
            "SELECT source, count(*) AS n FROM calls WHERE offered_at >= $1 AND offered_at < $2"
            " AND dialled_number = '112' GROUP BY source",
            since,
            until,
        )
        # The last row written for a call offered before the fault: how long its backlog took.
        backlog = await conn.fetchval(
            "SELECT extract(epoch FROM max(created_at) - $2) FROM calls"
            " WHERE offered_at >= $1 AND offered_at < $2 AND dialled_number = '112'",
            since,
            fault,
        )
        # Calls only the CDR file gave a row: from each call's end (when Asterisk wrote its
        # line) to its row, the longest; and the last such row after the fault.
        reconciled = await conn.fetchrow(
            "SELECT extract(epoch FROM max(created_at - ended_at)) AS lag,"
            " extract(epoch FROM max(created_at) - $3) AS last FROM calls"
            " WHERE offered_at >= $1 AND offered_at < $2 AND dialled_number = '112'"
            " AND source = 'reconciled'",
            since,
            until,
            fault,
        )
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT linkedid FROM calls c JOIN incidents i"
            " ON i.origin_linkedid = c.linkedid WHERE c.offered_at >= $1 AND c.offered_at < $2"
            " GROUP BY linkedid HAVING count(DISTINCT i.id) > 1) d",
            since,
            until,
        )
    finally:
        await conn.close()
    return {
        "rows": sum(r["calls"] for r in rows),
        "with_incident": sum(r["with_incident"] for r in rows),
        "duplicate_incidents": duplicates,
        "queued": sum(r["queued"] for r in rows),
        "answered": sum(r["answered"] for r in rows),
        "by_source": {r["source"]: r["n"] for r in sources},
        "last_row_before_fault_written_s": None if backlog is None else float(backlog),
        "reconciled_row_after_end_max_s": _float(reconciled["lag"]),
        "last_reconciled_row_s": _float(reconciled["last"]),
        "per_node": {r["node"]: r["calls"] for r in rows},
        "answered_per_node": {r["node"]: r["answered"] for r in rows},
        "open_on": {r["node"]: r["open"] for r in rows if r["open"]},
    }


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _safe_figures(
    database_url: str, since: datetime, until: datetime, fault: datetime
) -> dict[str, Any] | None:
    try:
        return asyncio.run(_figures(database_url, since, until, fault))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None


class Drill:
    def __init__(self, args: argparse.Namespace, settings: Settings, pair: pgha.PgHa) -> None:
        self.args = args
        self.settings = settings
        self.pair = pair
        self.database_url = pair.url(BENCH_DATABASE)
        self.workdir = Path(tempfile.mkdtemp(prefix="siaga112-drill-ha-"))
        self.nodes = {n.name: NodeSandbox(settings, n) for n in settings.pbx_nodes}
        self.proxy = Proxy(settings, PROXY, settings.pbx_nodes)
        self.serves: dict[str, Running] = {}
        # The operators' phones, each registered with both nodes.
        self.operators = [
            SippOperator(settings, ext, ring_ms=0, log_dir=self.workdir)
            for ext in settings.pbx.demo_operators
        ]
        self.target = f"{PROXY}:{settings.pbx.sip_port}"
        self.leases = [events_lease_name(settings, n) for n in settings.pbx_nodes]

    # -- the stack --------------------------------------------------------------------------

    def start_serve(self, instance: Instance) -> None:
        process = _serve(
            self.settings,
            self.database_url,
            instance,
            self.workdir / f"serve-{instance.name}.log",
        )
        self.serves[instance.name] = Running(instance, process)
        _wait_ready(self.serves[instance.name])

    def wait_leases_held(self, within_s: float = 30.0) -> None:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            owners = [self.lease_owner(name) for name in self.leases]
            if all(o is not None for o in owners):
                return
            time.sleep(0.2)
        raise RuntimeError("the nodes' leases were not taken")

    def lease_owner(self, name: str) -> str | None:
        """The instance whose worker holds the lease ``name``."""
        try:
            pid = lease_owner_pid(
                self.database_url, name, [r.process.pid for r in self.serves.values()]
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            return None
        return next((n for n, r in self.serves.items() if r.process.pid == pid), None)

    def start(self) -> None:
        for node in self.nodes.values():
            node.start()
        self.proxy.start()
        for phone in self.operators:
            phone.start()
        for instance in INSTANCES:
            self.start_serve(instance)
        self.wait_leases_held()

    def stop(self) -> list[int]:
        """Everything this drill started, stopped; returns the processes left behind."""
        started: set[tuple[int, int | None]] = set()
        for running in self.serves.values():
            started |= {*running.children, *_with_start_times(procs.children(running.process.pid))}
            if running.process.poll() is None:
                running.process.terminate()
        for running in self.serves.values():
            try:
                running.process.wait(20)
            except subprocess.TimeoutExpired:
                running.process.kill()
                running.process.wait(5)

        def ours(pid: int, since: int | None) -> bool:
            return since is not None and procs.start_time(pid) == since and procs.alive(pid)

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(ours(*p) for p in started):
            time.sleep(0.2)
        left = sorted(pid for pid, since in started if ours(pid, since))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proxy.stop()
        for phone in self.operators:
            phone.stop(unregister=False)
        for node in self.nodes.values():
            node.stop()
        return left

    # -- probes -----------------------------------------------------------------------------

    def probe_answered(self, since: float) -> tuple[float | None, int]:
        """Seconds from ``since`` until a probe call through the proxy is answered."""
        probes = 0
        while time.monotonic() - since < WHOLE_WITHIN_S:
            probes += 1
            probe = run_caller(
                self.settings,
                CALLER_SCENARIO,
                target=self.target,
                calls=1,
                hold_ms=100,
                timeout=10,
                cwd=self.workdir,
            )
            if probe.ok:
                return time.monotonic() - since, probes
            time.sleep(PROBE_EVERY_S)
        return None, probes

    # -- the faults -------------------------------------------------------------------------

    def fault_node(self) -> tuple[float, dict[str, Any]]:
        self.nodes["ha-b"].kill()
        killed = time.monotonic()
        log("fault: kill -9 of node ha-b's Asterisk")
        answered, probes = self.probe_answered(killed)
        return killed, {"probes": probes, "new_call_answered_s": answered, "whole_s": answered}

    def restore_node(self) -> None:
        self.nodes["ha-b"].start()
        # A killed Asterisk may have lost the phones' contacts: they register again (from
        # their own port, so each phone's answering side is stopped meanwhile).
        for phone in self.operators:
            phone.stop(unregister=False)
            phone.start()
        time.sleep(5)  # Kamailio's OPTIONS probes find it up again

    def fault_instance(self) -> tuple[float, dict[str, Any]]:
        owners = {name: self.lease_owner(name) for name in self.leases}
        victim_name = owners[self.leases[0]] or "a"
        victim = self.serves[victim_name]
        other = next(r for n, r in self.serves.items() if n != victim_name)
        held = [name for name, owner in owners.items() if owner == victim_name]
        holders = {}
        for name in held:
            holders[name] = asyncio.run(lease_holder(self.database_url, name))
        resyncs_before = _resyncs_completed(other.instance)
        log(f"fault: kill -9 of serve {victim_name} (holds {', '.join(held) or 'no lease'})")
        killed = kill_instance(victim.process.pid)
        victim.process.wait(5)
        moved: dict[str, float | None] = {}
        for name in held:
            moved[name] = asyncio.run(
                wait_lease_moved(self.database_url, name, holders[name], since=killed.killed_at)
            )
        resynced: float | None = None
        while time.monotonic() - killed.killed_at < WHOLE_WITHIN_S:
            if _resyncs_completed(other.instance) >= resyncs_before + len(held):
                resynced = time.monotonic() - killed.killed_at
                break
            time.sleep(0.05)
        answered, probes = self.probe_answered(killed.killed_at)
        parts = [*moved.values(), resynced, answered]
        whole = None if any(p is None for p in parts) else max(p for p in parts if p is not None)
        return killed.killed_at, {
            "killed_instance": victim_name,
            "leases_held": held,
            "workers_ended_s": killed.workers_ended_s,
            "workers_left_behind": killed.left_behind,
            "lease_moved_s": moved,
            "resynced_s": resynced,
            "probes": probes,
            "new_call_answered_s": answered,
            "whole_s": whole,
            "_victim": victim_name,
        }

    def restore_instance(self, name: str) -> None:
        instance = next(i for i in INSTANCES if i.name == name)
        self.start_serve(instance)

    def fault_pg(self) -> tuple[float, dict[str, Any]]:
        killed = time.monotonic()
        log(f"fault: PostgreSQL primary crashed, replica promoted {self.args.admin_delay_s} s on")
        failover = pg_failover(
            self.pair,
            lambda: all(_ready(r.instance) for r in self.serves.values()),
            admin_delay_s=self.args.admin_delay_s,
        )
        answered, probes = self.probe_answered(killed)
        parts = [failover.writable_after_s, answered]
        whole = None if any(p is None for p in parts) else max(p for p in parts if p is not None)
        return killed, {
            "killed_primary": failover.killed,
            "promoted": failover.promoted,
            "promoted_s": failover.promoted_after_s,
            "writes_back_s": failover.writable_after_s,
            "probes": probes,
            "new_call_answered_s": answered,
            "whole_s": whole,
        }

    # -- one phase --------------------------------------------------------------------------

    def phase(self, fault: str) -> dict[str, Any]:
        args = self.args
        since = datetime.now(UTC)
        calls = max(1, int(args.rate * args.step_seconds))
        stream: dict[str, Any] = {}

        def place() -> None:
            r = run_caller(
                self.settings,
                str(stream_scenario(args.hold, self.workdir)),
                target=self.target,
                calls=calls,
                rate=args.rate,
                hold_ms=int(args.hold * 1000),
                timeout=args.step_seconds + args.settle,
                cwd=self.workdir,
            )
            stream.update(successful=r.successful, failed=r.failed)

        caller = threading.Thread(target=place)
        caller.start()
        time.sleep(args.fault_at)
        do: Callable[[], tuple[float, dict[str, Any]]] = {
            "node": self.fault_node,
            "instance": self.fault_instance,
            "pg": self.fault_pg,
        }[fault]
        fault_wall = datetime.now(UTC)
        fault_at, measured = do()
        caller.join()
        probes = measured.get("probes", 0)
        probe_ok = 1 if measured.get("new_call_answered_s") is not None else 0
        taken = (stream.get("successful") or 0) + probe_ok
        until = datetime.now(UTC)
        reconciled: float | None = None
        figures: dict[str, Any] | None = None
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            figures = _safe_figures(self.database_url, since, until, fault_wall) or figures
            if figures is not None and figures["with_incident"] >= taken:
                reconciled = time.monotonic() - fault_at
                break
            time.sleep(1)
        time.sleep(2)  # the last calls' hangups, then the figures on record
        figures = _safe_figures(self.database_url, since, until, fault_wall) or figures
        victim = measured.pop("_victim", None)
        result = {
            "fault": fault,
            "offered": calls + probes,
            "taken": taken,
            "failed": (stream.get("failed") or 0) + probes - probe_ok,
            **(figures or {}),
            **measured,
            "reconciled_s": reconciled,
        }
        if fault == "node":
            self.restore_node()
        elif fault == "instance" and victim is not None:
            self.restore_instance(victim)
            self.wait_leases_held()
        return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    reason = pbx_unavailable_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    if os.geteuid() != 0:
        raise SystemExit("needs root (Asterisk's chroot; PostgreSQL runs as postgres)")
    faults = [f.strip() for f in args.ha_faults.split(",") if f.strip()]
    if not faults or any(f not in FAULTS for f in faults):
        raise SystemExit(f"--ha-faults: a comma-separated choice of {FAULTS}")
    pair = pgha.PgHa(
        base=Path("/var/lib/postgresql/siaga112-pgha-drill-ha"),
        ports=(args.pg_ports[0], args.pg_ports[1]),
    )
    base = Settings()
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, "-m", "bench.drill", *sys.argv[1:]]),
        "rate": args.rate,
        "step_seconds": args.step_seconds,
        "fault_at": args.fault_at,
        "phases": [],
    }
    with pgha.running(pair):
        database_url = pair.url(BENCH_DATABASE)
        log(f"PostgreSQL pair up ({database_url}); migrating")
        upgrade(database_url)
        settings = base.model_copy(
            update={
                "database_url": database_url,
                "agi": base.agi.model_copy(
                    update={
                        "port": INSTANCES[0].agi_port,
                        "targets": [i.agi_target for i in INSTANCES],
                    }
                ),
                "pbx": PbxSettings(
                    cdr_file_name=CDR_FILE, nodes=NODES, carrier_addresses=["127.0.0.2", PROXY]
                ),
            }
        )
        drill = Drill(args, settings, pair)
        result["run_directory"] = str(drill.workdir)
        log(f"run directory {drill.workdir}")
        try:
            drill.start()
            for n, fault in enumerate(faults):
                if n:
                    time.sleep(args.pause)
                log(f"phase {fault}")
                result["phases"].append(drill.phase(fault))
        finally:
            result["left_behind"] = drill.stop()
    result["totals"] = totals(result["phases"])
    return result


def totals(phases: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "offered", "taken", "failed", "rows", "with_incident", "queued", "answered",
        "duplicate_incidents",
    )  # fmt: skip
    out: dict[str, Any] = {k: sum(p.get(k) or 0 for p in phases) for k in keys}
    wholes: list[float | None] = [p.get("whole_s") for p in phases]
    known = [w for w in wholes if w is not None]
    out["worst_whole_s"] = None if len(known) < len(wholes) else max(known, default=None)
    return out


TABLE_KEYS = (
    "fault", "offered", "taken", "failed", "rows", "with_incident", "queued", "answered",
    "duplicate_incidents",
)  # fmt: skip


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(result: dict[str, Any]) -> str:
    lines = [
        f"HA drill: {result['rate']:g} calls/s through Kamailio to 2 nodes, 2 siaga112 "
        "instances, PostgreSQL primary + replica",
        f"{'fault':<9} {'offered':>7} {'taken':>5} {'failed':>6} {'rows':>5} {'incid.':>6} "
        f"{'queued':>6} {'answd':>5} {'dup':>3} {'whole s':>7} {'reconciled s':>12}",
    ]
    for p in result["phases"]:
        lines.append(
            f"{p['fault']:<9} {p['offered']:>7} {p['taken']:>5} {p['failed']:>6} "
            f"{p.get('rows', '-'):>5} {p.get('with_incident', '-'):>6} "
            f"{p.get('queued', '-'):>6} {p.get('answered', '-'):>5} "
            f"{p.get('duplicate_incidents', '-'):>3} {_s(p.get('whole_s')):>7} "
            f"{_s(p.get('reconciled_s')):>12}"
        )
    t = result["totals"]
    lines.append(
        f"{'total':<9} {t['offered']:>7} {t['taken']:>5} {t['failed']:>6} {t['rows']:>5} "
        f"{t['with_incident']:>6} {t['queued']:>6} {t['answered']:>5} "
        f"{t['duplicate_incidents']:>3} {_s(t['worst_whole_s']):>7}"
    )
    for p in result["phases"]:
        detail = {k: v for k, v in p.items() if k not in TABLE_KEYS}
        lines.append(f"  {p['fault']}: {json.dumps(detail, default=str)}")
    lines.append(f"left behind at the end: {result.get('left_behind') or 'none'}")
    return "\n".join(lines)
