"""AGI load without Asterisk: does `siaga112 serve` keep anything per call?

`siaga112 serve --no-worker` (telephony on: FastAGI server, actions-only AMI link that finds no
Asterisk, event hub, dispatch delivery worker, metrics) runs on a database of its own and is
driven by a FastAGI client that speaks to it as Asterisk's dialplan does (the request block of
tests/fixtures/agi/incoming-observed.txt with the dialplan's ``?key=``, each call its own
uniqueid and caller number; every ``SET VARIABLE`` answered ``200 result=1``). serve's RSS, the
count of live objects by type and (``--tracemalloc N``) a tracemalloc snapshot are taken after
every ``--sample-every`` calls; the figures and the largest differences between the last two
snapshots are printed, with serve's CPU per call and its PostgreSQL backends' (from /proc,
between the second and the last sample) and each AGI session's wall time (connect to close)
p50/p99. Needs only PostgreSQL on 127.0.0.1 (no sandbox, no root).

    .venv/bin/python -m bench.agiload --calls 100000 --sample-every 10000
    .venv/bin/python -m bench.agiload --calls 20000 --sample-every 5000 --tracemalloc 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import gc
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from bench.cpu import loadavg, proc_cpu_s
from siaga112.config import Settings
from siaga112.db.manage import connect, drop_database, upgrade

DATABASE = "siaga112_bench_agiload"
FIXTURE = (
    Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "agi" / "incoming-observed.txt"
)
DUMP_SIGNAL = signal.SIGUSR1
TABLES = ("calls", "incidents", "incident_events", "audit_events", "stream_events")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------------------
# the server side: siaga112 serve, with a dump on SIGUSR1


# serve's garbage collections (not the dump's own): per generation, how many, their time in
# all, and the longest since the last dump (a pause of the event loop: the AGI step waits).
_GC: dict[str, Any] = {
    "paused": False,
    "started": 0.0,
    "collections": [0, 0, 0],
    "seconds": [0.0, 0.0, 0.0],
    "longest": [0.0, 0.0, 0.0],
}


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    if _GC["paused"]:
        return
    if phase == "start":
        _GC["started"] = time.perf_counter()
        return
    generation, took = info["generation"], time.perf_counter() - _GC["started"]
    _GC["collections"][generation] += 1
    _GC["seconds"][generation] += took
    _GC["longest"][generation] = max(_GC["longest"][generation], took)


def _dump(directory: Path, frames: int) -> None:
    """Runs in serve's event loop, between two callbacks: nothing is half-done."""
    index = len(list(directory.glob("dump-*.json")))
    gc_stats = {
        "collections": list(_GC["collections"]),
        "seconds": list(_GC["seconds"]),
        "longest": list(_GC["longest"]),
    }
    _GC["longest"] = [0.0, 0.0, 0.0]
    _GC["paused"] = True
    gc.collect()
    types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    if frames:
        tracemalloc.take_snapshot().dump(str(directory / f"dump-{index}.tracemalloc"))
    traced = tracemalloc.get_traced_memory()[0] if frames else None
    _GC["paused"] = False
    body = {
        "rss_kib": rss_kib(os.getpid()),
        "traced_bytes": traced,
        "types": dict(types),
        "gc": gc_stats,
    }
    tmp = directory / f".dump-{index}.json"
    tmp.write_text(json.dumps(body))
    tmp.rename(directory / f"dump-{index}.json")


def serve_traced(directory: Path, frames: int) -> int:
    """``siaga112 serve --no-worker`` exactly as the CLI runs it, plus the dump handler."""
    if frames:
        tracemalloc.start(frames)
    gc.callbacks.append(_gc_callback)
    import siaga112.service as service
    from siaga112.cli import main

    original = service.serve

    async def serve(settings: Settings, **kwargs: Any) -> None:
        asyncio.get_running_loop().add_signal_handler(DUMP_SIGNAL, _dump, directory, frames)
        await original(settings, **kwargs)

    service.serve = serve
    return main(["serve", "--no-worker"])


# ---------------------------------------------------------------------------------------------
# the client side: Asterisk's AGI() step


class AgiClient:
    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self.secret = secret
        lines = [
            line
            for line in FIXTURE.read_text().splitlines()
            if line
            and not line.startswith(("agi_network_script", "agi_request", "agi_uniqueid"))
            and not line.startswith(("agi_callerid:", "agi_channel", "agi_arg_2"))
        ]
        self.template = "\n".join(lines)
        self.prefix = int(time.time())
        self.answered = 0
        self.with_incident = 0
        self.failed = 0
        # Wall time of each answered session, connect to close (seconds).
        self.durations: list[float] = []

    def request(self, n: int) -> bytes:
        number = f"+62812{n:08d}"
        pai = base64.b64encode(f"<sip:{number}@carrier.invalid;user=phone>".encode()).decode()
        head = (
            f"agi_network_script: incoming?key={self.secret}\n"
            f"agi_request: agi://127.0.0.1:{self.port}/incoming?key={self.secret}\n"
            f"agi_channel: PJSIP/carrier-{n:08x}\n"
            f"agi_uniqueid: {self.prefix}.{n}\n"
            f"agi_callerid: {number}\n"
            f"agi_arg_2: {pai}\n"
        )
        return (head + self.template + "\n\n").encode()

    async def call(self, n: int) -> None:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.failed += 1
            return
        try:
            writer.write(self.request(n))
            await writer.drain()
            while line := await reader.readline():
                if line.startswith(b"SET VARIABLE SIAGA112_INCIDENT_ID "):
                    self.with_incident += 1
                writer.write(b"200 result=1\n")
            self.answered += 1
            self.durations.append(time.perf_counter() - started)
        except OSError:
            self.failed += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def run(self, first: int, count: int, concurrency: int, rate: float) -> None:
        queue: asyncio.Queue[int | None] = asyncio.Queue()
        for n in range(first, first + count):
            queue.put_nowait(n)
        started = time.monotonic()

        async def one() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                if n is None:
                    return
                if rate:
                    delay = started + (n - first) / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await self.call(n)

        await asyncio.gather(*(one() for _ in range(concurrency)))


# ---------------------------------------------------------------------------------------------
# the run


async def table_sizes(database_url: str) -> dict[str, Any]:
    conn = await connect(database_url)
    try:
        sizes = {
            f"{t}_bytes": int(await conn.fetchval(f"SELECT pg_total_relation_size('{t}')"))
            for t in TABLES
        }
        sizes["database_bytes"] = int(
            await conn.fetchval("SELECT pg_database_size(current_database())")
        )
        # serve's connections (the pool fills as it needs them; the hub has its own).
        backends = [
            int(r["pid"])
            for r in await conn.fetch(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        sizes["db_connections"] = len(backends)
        return {**sizes, "backend_pids": backends}
    finally:
        await conn.close()


def request_dump(pid: int, directory: Path, index: int) -> dict[str, Any]:
    os.kill(pid, DUMP_SIGNAL)
    path = directory / f"dump-{index}.json"
    deadline = time.monotonic() + 300
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("serve wrote no dump")
        time.sleep(0.2)
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def wait_listening(port: int, proc: subprocess.Popen[bytes], within_s: float = 300) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("siaga112 serve ended at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise RuntimeError("the AGI port did not open")


def type_growth(before: dict[str, int], after: dict[str, int], top: int) -> list[str]:
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)}
    ranked = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]
    return [f"  {v:+8d}  {k}" for k, v in ranked if v]


def trace_growth(directory: Path, a: int, b: int, top: int) -> list[str]:
    first = tracemalloc.Snapshot.load(str(directory / f"dump-{a}.tracemalloc"))
    second = tracemalloc.Snapshot.load(str(directory / f"dump-{b}.tracemalloc"))
    keep = [tracemalloc.Filter(False, tracemalloc.__file__)]
    stats = second.filter_traces(keep).compare_to(first.filter_traces(keep), "traceback")
    out: list[str] = []
    for stat in stats[:top]:
        out.append(f"  {stat.size_diff:+10d} B {stat.count_diff:+7d} blocks")
        out.extend(
            f"      {line.strip()}" for line in stat.traceback.format()[-12:] if line.strip()
        )
    return out


def cpu_per_call(a: dict[str, Any], b: dict[str, Any], calls: int) -> dict[str, float]:
    """serve's CPU ms per call, and its PostgreSQL backends' (those alive at both samples)."""
    out: dict[str, float] = {}
    if a["serve_cpu_s"] is not None and b["serve_cpu_s"] is not None:
        out["serve_cpu_ms"] = round((b["serve_cpu_s"] - a["serve_cpu_s"]) * 1000 / calls, 3)
    before, after = a["backends_cpu"], b["backends_cpu"]
    used = sum(after[pid] - before.get(pid, 0.0) for pid in after)
    out["postgres_cpu_ms"] = round(used * 1000 / calls, 3)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = Settings()
    database_url = args.database_url or make_url(base.database_url_str).set(
        database=DATABASE
    ).render_as_string(hide_password=False)
    if make_url(database_url).database == make_url(base.database_url_str).database:
        raise SystemExit("refusing to use the development database")
    log(f"database {make_url(database_url).database}: drop, create, migrate")
    asyncio.run(drop_database(database_url))
    upgrade(database_url)
    workdir = Path(tempfile.mkdtemp(prefix="siaga112-agiload-"))
    agi_port, api_port = free_port(), free_port()
    secret = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "SIAGA112_DATABASE_URL": database_url,
        "SIAGA112_AGI__PORT": str(agi_port),
        "SIAGA112_AGI__SECRET": secret,
        "SIAGA112_API__PORT": str(api_port),
        # No Asterisk: the actions-only AMI link tries a closed port now and then.
        "SIAGA112_AMI__PORT": str(free_port()),
    }
    command = [sys.executable, "-m", "bench.agiload", "--serve-traced", str(workdir)]
    command += ["--tracemalloc", str(args.tracemalloc)]
    log(f"run directory {workdir}; siaga112 serve --no-worker, AGI on {agi_port}")
    with (workdir / "serve.log").open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    samples: list[dict[str, Any]] = []
    dumps: list[dict[str, Any]] = []
    try:
        wait_listening(agi_port, proc)
        client = AgiClient(agi_port, secret)
        done = 0
        started = time.monotonic()

        def sample() -> None:
            dump = request_dump(proc.pid, workdir, len(dumps))
            dumps.append(dump)
            row = {
                "calls": done,
                "t_s": round(time.monotonic() - started, 1),
                "rss_kib": dump["rss_kib"],
                "traced_bytes": dump["traced_bytes"],
                "objects": sum(dump["types"].values()),
                "serve_cpu_s": proc_cpu_s(proc.pid),
                "load": loadavg(),
                **asyncio.run(table_sizes(database_url)),
            }
            # serve's backends' CPU now (a backend that ended since is not counted: low).
            row["backends_cpu"] = {
                str(pid): proc_cpu_s(pid, children=False) or 0.0 for pid in row.pop("backend_pids")
            }
            row["durations_seen"] = len(client.durations)
            samples.append(row)
            log(
                f"{done:>8} calls  rss {row['rss_kib']} KiB  objects {row['objects']}"
                + (f"  traced {row['traced_bytes']}" if row["traced_bytes"] is not None else "")
                + f"  db {row['database_bytes']}  connections {row['db_connections']}"
                + f"  load {row['load']:.2f}"
            )

        sample()
        while done < args.calls:
            count = min(args.sample_every, args.calls - done)
            asyncio.run(client.run(done, count, args.concurrency, args.rate))
            done += count
            sample()
        if args.idle:
            log(f"idle {args.idle:g} s")
            time.sleep(args.idle)
            sample()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    elapsed = samples[-1]["t_s"] - samples[0]["t_s"]
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, "-m", "bench.agiload", *sys.argv[1:]]),
        "run_directory": str(workdir),
        "calls": done,
        "answered": client.answered,
        "with_incident": client.with_incident,
        "failed": client.failed,
        "calls_per_s": round(done / elapsed, 1) if elapsed else None,
        "samples": samples,
    }
    if len(samples) >= 3:
        # From the second sample on: the first calls warm up pools, caches and code paths.
        a, b = samples[1], samples[-1]
        calls = b["calls"] - a["calls"]
        if calls:
            result["per_call"] = {
                "rss_bytes": (b["rss_kib"] - a["rss_kib"]) * 1024 / calls,
                "objects": (b["objects"] - a["objects"]) / calls,
                **{
                    k: (b[k] - a[k]) / calls
                    for k in (*(f"{t}_bytes" for t in TABLES), "database_bytes")
                },
                **cpu_per_call(a, b, calls),
            }
            ga, gb = dumps[1]["gc"], dumps[-1]["gc"]
            result["gc"] = {
                "collections_per_1000_calls": [
                    round((y - x) * 1000 / calls, 1)
                    for x, y in zip(ga["collections"], gb["collections"], strict=True)
                ],
                "ms_per_call": round((sum(gb["seconds"]) - sum(ga["seconds"])) * 1000 / calls, 4),
                "longest_ms": [
                    round(max(d["gc"]["longest"][g] for d in dumps[2:]) * 1000, 2) for g in range(3)
                ],
            }
            spans = sorted(client.durations[a["durations_seen"] : b["durations_seen"]])
            if spans:
                result["agi_session_ms"] = {
                    "p50": round(spans[len(spans) // 2] * 1000, 2),
                    "p99": round(spans[min(len(spans) - 1, int(len(spans) * 0.99))] * 1000, 2),
                    "load": [a["load"], b["load"]],
                }
    if len(dumps) >= 2:
        result["types_growth_last"] = type_growth(dumps[-2]["types"], dumps[-1]["types"], 15)
    if args.tracemalloc and len(dumps) >= 2:
        result["traced_growth_last"] = trace_growth(workdir, len(dumps) - 2, len(dumps) - 1, 10)
    if not args.keep_database:
        asyncio.run(drop_database(database_url))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--sample-every", type=int, default=10_000, help="calls between samples")
    p.add_argument("--concurrency", type=int, default=16, help="AGI sessions at once (16)")
    p.add_argument("--rate", type=float, default=0.0, help="calls/s; 0: as fast as served")
    p.add_argument("--idle", type=float, default=0.0, help="then s without calls, one sample")
    p.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES", help="0: off")
    p.add_argument("--database-url", help=f"default: the configured server, database {DATABASE}")
    p.add_argument("--keep-database", action="store_true")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--serve-traced", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_traced:
        return serve_traced(Path(args.serve_traced), args.tracemalloc)
    result = run(args)
    keys = ("calls", "answered", "with_incident", "failed", "calls_per_s", "per_call")
    for key in (*keys, "agi_session_ms", "gc"):
        print(f"{key}: {result.get(key)}")
    print("object types, growth between the last two samples:")
    print("\n".join(result.get("types_growth_last", [])))
    if "traced_growth_last" in result:
        print("tracemalloc, growth between the last two samples (by traceback):")
        print("\n".join(result["traced_growth_last"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
