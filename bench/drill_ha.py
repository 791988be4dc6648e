"""The high-availability drill (``python -m bench.drill --ha``): a steady stream of real calls
through Kamailio to two Asterisk nodes while one node is killed.

Skeleton of issue 14's drill, for the node fault only: two nodes of the sandbox
(siaga112_sandbox.nodes) behind Kamailio on 127.0.0.10, one `siaga112 serve` (AGI for both nodes;
its events worker follows both under their leases), SIPp callers (caller-112-proxy.xml) at
``--rate`` calls/s for ``--step-seconds`` s, and ``kill -9`` of node B's Asterisk ``--fault-at``
s in. Reported: calls offered (SIPp), taken (answered by a node), with a call row, with an
incident, duplicate incidents, calls per node, calls left open on the dead node, and the time
from the kill until a probe call through the proxy is answered by the surviving node. The second
siaga112 instance and the PostgreSQL primary's fault are to be added beside this one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from bench.realstack import READY_TIMEOUT_S, log
from siaga112.config import PbxNodeSettings, PbxSettings, Settings
from siaga112.db.manage import drop_database, upgrade
from siaga112.db.session import asyncpg_dsn
from siaga112_sandbox.nodes import NodeSandbox, Proxy
from siaga112_sandbox.sipp import pbx_unavailable_reason, run_caller

BENCH_DATABASE = "siaga112_bench_drill_ha"
CDR_FILE = "siaga112-cdr-bench-ha.csv"
PROXY = "127.0.0.10"
NODES = [
    PbxNodeSettings(name="ha-a", ami_host="127.0.0.11", sip_address="127.0.0.11"),
    PbxNodeSettings(name="ha-b", ami_host="127.0.0.12", sip_address="127.0.0.12"),
]
AGI_PORT = 4593
API_PORT = 8193
WORKER_PORT = 8194
PROBE_EVERY_S = 0.25


def _serve(settings: Settings, database_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIAGA112_")} | {
        "SIAGA112_DATABASE_URL": database_url,
        "SIAGA112_STATE_DIR": str(settings.state_dir),
        "SIAGA112_AGI__PORT": str(AGI_PORT),
        "SIAGA112_API__PORT": str(API_PORT),
        "SIAGA112_WORKER__PORT": str(WORKER_PORT),
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


def _wait_ready(process: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("siaga112 serve exited at start")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{API_PORT}/readyz", timeout=2
            ) as response:
                if json.loads(response.read()).get("ready"):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError("siaga112 serve not ready")


async def _figures(database_url: str, since: datetime) -> dict[str, Any]:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT node, count(*) AS calls, count(incident_id) AS with_incident,"
            " count(*) FILTER (WHERE ended_at IS NULL) AS open"
            " FROM calls WHERE offered_at >= $1 AND dialled_number = '112' GROUP BY node",
            since,
        )
        duplicates = await conn.fetchval(
            "SELECT count(*) FROM (SELECT linkedid FROM calls c JOIN incidents i"
            " ON i.origin_linkedid = c.linkedid WHERE c.offered_at >= $1"
            " GROUP BY linkedid HAVING count(DISTINCT i.id) > 1) d",
            since,
        )
    finally:
        await conn.close()
    per_node = {r["node"]: dict(r) for r in rows}
    return {
        "rows": sum(r["calls"] for r in rows),
        "with_incident": sum(r["with_incident"] for r in rows),
        "duplicate_incidents": duplicates,
        "per_node": {n: v["calls"] for n, v in per_node.items()},
        "open_on": {n: v["open"] for n, v in per_node.items() if v["open"]},
    }


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
            "agi": base.agi.model_copy(update={"port": AGI_PORT}),
            "pbx": PbxSettings(
                cdr_file_name=CDR_FILE, nodes=NODES, carrier_addresses=["127.0.0.2", PROXY]
            ),
        }
    )
    workdir = Path(tempfile.mkdtemp(prefix="siaga112-drill-ha-"))
    log(f"run directory {workdir}; database: drop, create, migrate")
    asyncio.run(drop_database(database_url))
    upgrade(database_url)
    nodes = {n.name: NodeSandbox(settings, n) for n in settings.pbx_nodes}
    proxy = Proxy(settings, PROXY, settings.pbx_nodes)
    serve: subprocess.Popen[bytes] | None = None
    target = f"{PROXY}:{settings.pbx.sip_port}"
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, "-m", "bench.drill", *sys.argv[1:]]),
        "run_directory": str(workdir),
    }
    try:
        for node in nodes.values():
            node.start()
        proxy.start()
        serve = _serve(settings, database_url, workdir / "serve.log")
        _wait_ready(serve)
        time.sleep(2)  # the events worker's leases
        since = datetime.now(UTC)
        calls = max(1, int(args.rate * args.step_seconds))
        stream: dict[str, Any] = {}

        def place() -> None:
            r = run_caller(
                settings,
                "caller-112-proxy.xml",
                target=target,
                calls=calls,
                rate=args.rate,
                hold_ms=int(args.hold * 1000),
                timeout=args.step_seconds + args.settle,
                cwd=workdir,
            )
            stream.update(successful=r.successful, failed=r.failed)

        caller = threading.Thread(target=place)
        caller.start()
        time.sleep(args.fault_at)
        nodes["ha-b"].kill()
        killed = time.monotonic()
        log("fault: kill -9 of node ha-b's Asterisk")
        whole_s: float | None = None
        probes = 0
        while time.monotonic() - killed < 30:
            probes += 1
            probe = run_caller(
                settings, "caller-112-proxy.xml", target=target, calls=1, hold_ms=100, timeout=10
            )
            if probe.ok:
                whole_s = time.monotonic() - killed
                break
            time.sleep(PROBE_EVERY_S)
        caller.join()
        time.sleep(min(args.settle, 10))
        figures = asyncio.run(_figures(database_url, since))
        result |= {
            "offered": calls,
            "taken": stream.get("successful"),
            "failed": stream.get("failed"),
            **figures,
            "probes": probes,
            "first_call_answered_after_kill_s": whole_s,
        }
    finally:
        if serve is not None and serve.poll() is None:
            serve.terminate()
            try:
                serve.wait(20)
            except subprocess.TimeoutExpired:
                serve.kill()
        proxy.stop()
        for node in nodes.values():
            node.stop()
    return result


def report(result: dict[str, Any]) -> str:
    keys = (
        "offered", "taken", "failed", "probes", "rows", "with_incident", "duplicate_incidents",
        "per_node", "open_on", "first_call_answered_after_kill_s",
    )  # fmt: skip
    return "node fault (kill -9 of one of two Asterisk nodes behind Kamailio)\n" + "\n".join(
        f"  {k}: {result.get(k)}" for k in keys
    )
