"""Takeover drill: how long after the process following a PBX node's AMI events dies does
another one follow it, resynchronised (``python -m bench.takeover``).

Two Asterisk nodes of the sandbox (siaga112_sandbox.nodes) and ``--workers`` `siaga112 worker
--duties events` processes on one bench database: per node exactly one worker holds its lease
(siaga112.runtime.lease), the others stand by warm. Each round kills the holder of a node's
lease (``kill -9``, or SIGTERM: what a worker whose serve was killed gets, through
PR_SET_PDEATHSIG) and measures from the signal until a survivor has completed the resync of
every node the victim held (AMI login, QueueStatus and CoreShowChannels read back, the CDR
file reconciled: the ``ami_resyncs_completed`` counter). A new worker is then started in the
victim's place and the next round waits until it stands by.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.realstack import log, q
from siaga112.config import PbxNodeSettings, PbxSettings, Settings
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.session import asyncpg_dsn
from siaga112.runtime.lease import lease_key
from siaga112.worker import events_lease_name
from siaga112_sandbox.nodes import NodeSandbox
from siaga112_sandbox.sipp import pbx_unavailable_reason

BENCH_DATABASE = "siaga112_bench_takeover"
CDR_FILE = "siaga112-cdr-bench-takeover.csv"
NODES = [
    PbxNodeSettings(name="bench-a", ami_host="127.0.0.11", sip_address="127.0.0.11"),
    PbxNodeSettings(name="bench-b", ami_host="127.0.0.12", sip_address="127.0.0.12"),
]
FIRST_METRICS_PORT = 8191
SIGNALS = {"kill9": signal.SIGKILL, "sigterm": signal.SIGTERM}


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int

    def metric(self, name: str) -> float:
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1).text
        except httpx.HTTPError:
            return 0.0
        for line in text.splitlines():
            if line.startswith(f"siaga112_{name}_total "):
                return float(line.split()[1])
        return 0.0


@dataclass
class Drill:
    settings: Settings
    database_url: str
    workdir: Path
    workers: list[Worker] = field(default_factory=list)
    next_port: int = FIRST_METRICS_PORT

    def start_worker(self) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIAGA112_")} | {
            "SIAGA112_DATABASE_URL": self.database_url,
            "SIAGA112_STATE_DIR": str(self.settings.state_dir),
            "SIAGA112_PBX__CDR_FILE_NAME": CDR_FILE,
            "SIAGA112_PBX__NODES": json.dumps([n.model_dump(mode="json") for n in NODES]),
        }
        port, self.next_port = self.next_port, self.next_port + 1
        with (self.workdir / f"worker-{port}.log").open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "siaga112", "worker", "--duties", "events",
                 "--metrics-port", str(port)],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        worker = Worker(process, port)
        self.workers.append(worker)
        return worker

    def holders(self) -> dict[str, int]:
        """Node -> pid of the process holding its lease."""
        return asyncio.run(self._holders())

    async def _holders(self) -> dict[str, int]:
        conn = await asyncpg.connect(asyncpg_dsn(self.database_url))
        try:
            out: dict[str, int] = {}
            for node in self.settings.pbx_nodes:
                name = await conn.fetchval(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                    " USING (pid) WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.classid = (($1::bigint >> 32) & x'ffffffff'::bigint)::oid"
                    " AND l.objid = ($1::bigint & x'ffffffff'::bigint)::oid",
                    lease_key(events_lease_name(self.settings, node)),
                )
                if name:
                    out[node.name] = int(name.rsplit(" ", 1)[1])
            return out
        finally:
            await conn.close()

    def wait_whole(self, within_s: float = 60.0) -> dict[str, int]:
        """Every node followed and every other worker standing by."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            holders = self.holders()
            alive = [w for w in self.workers if w.process.poll() is None]
            followed = len(holders) == len(self.settings.pbx_nodes)
            standing_by = all(
                w.metric("lease_standby") >= 1
                for w in alive
                if w.process.pid not in holders.values()
            )
            resynced = all(
                w.metric("ami_resyncs_completed") >= 1
                for w in alive
                if w.process.pid in holders.values()
            )
            if followed and standing_by and resynced:
                return holders
            time.sleep(0.2)
        raise RuntimeError(f"not whole within {within_s} s: {self.holders()}")

    def round(self, node: str, how: str) -> dict[str, Any]:
        holders = self.wait_whole()
        victim_pid = holders[node]
        victim = next(w for w in self.workers if w.process.pid == victim_pid)
        held = [n for n, pid in holders.items() if pid == victim_pid]
        survivors = [w for w in self.workers if w is not victim and w.process.poll() is None]
        before = {w.port: w.metric("ami_resyncs_completed") for w in survivors}
        killed = time.monotonic()
        victim.process.send_signal(SIGNALS[how])
        taken_s: float | None = None
        while time.monotonic() - killed < 30:
            gained = sum(w.metric("ami_resyncs_completed") - before[w.port] for w in survivors)
            if gained >= len(held):
                taken_s = time.monotonic() - killed
                break
            time.sleep(0.01)
        victim.process.wait(30)
        self.workers.remove(victim)
        after = self.holders()
        log(
            f"{how} of the follower of {', '.join(held)} (pid {victim_pid}): "
            + (f"resynchronised {taken_s * 1000:.0f} ms later" if taken_s else "NOT taken over")
            + f"; now {after}"
        )
        self.start_worker()
        return {"signal": how, "nodes": held, "takeover_s": taken_s, "holders_after": after}


def run(args: argparse.Namespace) -> dict[str, Any]:
    reason = pbx_unavailable_reason()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    base = Settings()
    database_url = args.database_url or make_url(base.database_url_str).set(
        database=BENCH_DATABASE
    ).render_as_string(hide_password=False)
    settings = base.model_copy(
        update={
            "database_url": database_url,
            "pbx": PbxSettings(cdr_file_name=CDR_FILE, nodes=NODES),
        }
    )
    workdir = Path(tempfile.mkdtemp(prefix="siaga112-takeover-"))
    log(f"run directory {workdir}; database: drop, create, migrate")
    asyncio.run(drop_database(database_url))
    upgrade(database_url)
    nodes = [NodeSandbox(settings, n) for n in settings.pbx_nodes]
    drill = Drill(settings=settings, database_url=database_url, workdir=workdir)
    rounds: list[dict[str, Any]] = []
    try:
        for node in nodes:
            node.start()
        log("nodes up; starting the workers")
        for _ in range(args.workers):
            drill.start_worker()
        for i in range(args.rounds):
            for how in args.signals:
                rounds.append(drill.round(NODES[i % len(NODES)].name, how))
    finally:
        for worker in drill.workers:
            worker.process.terminate()
        for worker in drill.workers:
            try:
                worker.process.wait(15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
        for node in nodes:
            node.stop()
    summary: dict[str, Any] = {}
    for how in args.signals:
        times = [r["takeover_s"] for r in rounds if r["signal"] == how and r["takeover_s"]]
        summary[how] = {
            "rounds": sum(1 for r in rounds if r["signal"] == how),
            "taken_over": len(times),
            "min_s": min(times) if times else None,
            "p50_s": q(times, 0.5),
            "max_s": max(times) if times else None,
        }
    return {
        "command": " ".join([sys.executable, "-m", "bench.takeover", *sys.argv[1:]]),
        "workers": args.workers,
        "rounds": rounds,
        "summary": summary,
        "run_directory": str(workdir),
    }


def report(result: dict[str, Any]) -> str:
    lines = [
        f"takeover of a node's AMI follower ({result['workers']} workers, 2 nodes)",
        "signal    rounds  taken over  min ms  p50 ms  max ms",
    ]
    for how, s in result["summary"].items():

        def ms(v: float | None) -> str:
            return f"{v * 1000:.0f}" if v is not None else "-"

        lines.append(
            f"{how:<9} {s['rounds']:>6}  {s['taken_over']:>10}  {ms(s['min_s']):>6}  "
            f"{ms(s['p50_s']):>6}  {ms(s['max_s']):>6}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.takeover", description=__doc__)
    p.add_argument("--rounds", type=int, default=5, help="rounds per signal (default 5)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--signals",
        type=lambda v: [s for s in v.split(",") if s],
        default=list(SIGNALS),
        help="kill9,sigterm (default both)",
    )
    p.add_argument("--database-url", default=None, help=f"default: .../{BENCH_DATABASE}")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    if any(s not in SIGNALS for s in args.signals):
        p.error("--signals: kill9 and/or sigterm")
    result = run(args)
    print(report(result), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
